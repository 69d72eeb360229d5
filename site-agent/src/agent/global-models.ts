import {
  baseStateSha256,
  bytesToFloat32,
  federation,
  float32ToBytes,
  initialGlobalModel,
  initialWeights,
  nextGlobalModel,
  parameterCount,
  sha256Hex,
  tagProblems,
  untagVector,
  type CkksContext,
  type GlobalModelState,
  decodeConsortiumStatistics,
  isStatisticsRound,
  roundPayloadLength,
  statisticsReportJson,
  statisticsVectorLength,
  studyStatisticsPlan,
  featureStatisticsViewSchema,
  type FeatureStatisticsView,
  type ModelSpec,
  type StudyDefinition,
} from '@federa/shared';
import { z } from 'zod';
import type { CoordinatorRetry, FederationClient } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import { aggregateClaimRefusal, aggregateContentRefusal, PolicyRefusalError } from '../policy/index.js';
import type { MultipartyKeys } from '../multiparty/index.js';
import type { ModelCache } from './model-cache.js';

export interface KeyHolder {
  context: CkksContext;
  secretKey: Uint8Array;
  /** Derived from the secret key: makes and checks the contribution tags in every ciphertext. */
  tagKey: Uint8Array;
}

/** What of a study decides how its global models are computed. */
export type GlobalModelStudy = Pick<StudyDefinition, 'model' | 'serverOptimizer' | 'aggregation' | 'statistics'>;

/** The model a round trains from, and the hash its update names as its base ('' for round 1, whose base is the seed's). */
export interface TrainingBase {
  weights: Float32Array;
  baseStateSha256: string;
}

/**
 * The global weights after each round, as this site computes them. Round 0 is made here from the study's seed (and
 * must be what the coordinator published). A later round's aggregate is used only if the coordinator says it sums
 * at least the policy's minParticipants distinct sites of the round's cohort (checked before decrypting anything),
 * and, for an encrypted round, if every ciphertext carries exactly those sites' contribution tags (checked on the
 * decrypted values, which are dropped unused otherwise). With a server optimizer, a round's weights are the
 * optimizer's step on the decrypted average update, from the previous round's weights and state, both kept here.
 */
export class GlobalModels {
  constructor(
    private readonly client: FederationClient,
    private readonly cache: ModelCache,
    private readonly keys: () => Promise<KeyHolder>,
    private readonly policy: SitePolicy,
    private readonly retry: CoordinatorRetry,
    /** Decrypts multiparty aggregates with the model key of their epoch; absent without a kit. */
    private readonly multiparty?: MultipartyKeys,
  ) {}

  path(studyId: string, round: number): string {
    return this.cache.path(studyId, round);
  }

  async weights(studyId: string, round: number, study: GlobalModelStudy, known?: federation.ModelRef): Promise<Float32Array> {
    return (await this.model(studyId, round, study, known)).weights;
  }

  /** The base of a train task: round `round`'s model, and the hash every update of the next round must name. */
  async trainingBase(studyId: string, round: number, study: GlobalModelStudy, known: federation.ModelRef): Promise<TrainingBase> {
    const model = await this.model(studyId, round, study, known);
    return { weights: model.weights, baseStateSha256: round === 0 ? '' : baseStateSha256(model, study.serverOptimizer) };
  }

  /**
   * Round `round`'s model: from the cache, or downloaded, checked and decrypted, and applied to the previous round's
   * (computed the same way, so a site that missed rounds replays them from their aggregates).
   */
  async model(studyId: string, round: number, study: GlobalModelStudy, known?: federation.ModelRef): Promise<GlobalModelState> {
    const settings = study.serverOptimizer;
    if (settings && study.aggregation === 'plaintext') {
      // The coordinator then publishes FedAvg's weights itself, and sites never see the sum their optimizer steps on.
      throw new Error(
        `study ${studyId} has a server optimizer (${settings.kind}) but aggregates in the clear, where the coordinator applies plain FedAvg; ` +
          'server optimizers run at the sites on decrypted sums: the study needs aggregation ckks or multiparty',
      );
    }
    const cached = await this.cache.read(studyId, round);
    if (cached) {
      if (!settings) return { weights: cached };
      if (round === 0) return initialGlobalModel(cached, settings);
      const server = await this.cache.readState(studyId, round, settings, cached.length);
      // Weights without their state (the state was deleted): computed again from the aggregates, to the same bits.
      if (server) return { weights: cached, server };
    }
    const spec = study.model;
    // A download changes nothing at the coordinator, so it is simply made again while the coordinator is away.
    const artifact = await this.retry.call(`model of round ${round}`, async () =>
      known ? { header: known, bytes: await this.client.downloadModel(known) } : this.client.downloadArtifact(studyId, round),
    );
    const header = artifact.header;
    if (round > 0) {
      const claim = aggregateClaimRefusal({ cohort: header.cohort, contributors: header.contributors, round }, this.policy);
      if (claim) throw new PolicyRefusalError(claim);
    }
    let model: GlobalModelState;
    switch (header.kind) {
      case federation.ModelKind.MODEL_KIND_WEIGHTS: {
        if (round > 0 && this.policy.requireEncryption) {
          throw new PolicyRefusalError({
            reason: federation.RefusalReason.REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED,
            message: `round ${round} of study ${studyId} was published as plain weights and this site's policy requires encryption`,
          });
        }
        const weights = bytesToFloat32(artifact.bytes, `global model of round ${round}`);
        if (round === 0) this.checkInitial(weights, spec, studyId);
        model = round === 0 ? initialGlobalModel(weights, settings) : { weights };
        break;
      }
      case federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE: {
        const { context, secretKey, tagKey } = await this.keys();
        const sum = this.checkAggregate(studyId, round, study, header, { tagged: context.decryptVector(artifact.bytes, secretKey), tagKey, valuesPerCiphertext: context.valuesPerCiphertext });
        model = await this.nextModel(studyId, round, study, sum, header.cohort.length);
        break;
      }
      case federation.ModelKind.MODEL_KIND_MULTIPARTY_AGGREGATE: {
        if (!this.multiparty) throw new Error(`round ${round} of study ${studyId} was aggregated with multiparty keys, which needs this site's kit`);
        const sum = this.checkAggregate(studyId, round, study, header, await this.multiparty.decryptModel(studyId, header, artifact.bytes));
        model = await this.nextModel(studyId, round, study, sum, header.cohort.length);
        break;
      }
      default:
        throw new Error(`round ${round} of study ${studyId} published an artifact of unknown kind ${federation.modelKindToJSON(header.kind)}`);
    }
    if (model.server && settings && round > 0) await this.cache.writeState(studyId, round, settings, model.server);
    await this.cache.write(studyId, round, model.weights);
    return model;
  }

  /**
   * The consortium statistics a statistics round's sum decrypted to, as the report's canonical JSON; decrypted (and
   * the round's model computed) first if this site has not yet.
   */
  async statistics(studyId: string, study: GlobalModelStudy, known?: federation.ModelRef): Promise<{ json: string; sha256: string; features: FeatureStatisticsView[] }> {
    let json = await this.cache.readStatistics(studyId, 1);
    if (json === undefined) {
      await this.model(studyId, 1, study, known);
      json = await this.cache.readStatistics(studyId, 1);
    }
    if (json === undefined) throw new Error(`study ${studyId} has no decrypted statistics: its round 1 model was cached without them; delete the study's model cache and retry`);
    const features = z.array(featureStatisticsViewSchema).parse(JSON.parse(json));
    return { json, sha256: sha256Hex(new TextEncoder().encode(json)), features };
  }

  /**
   * Round `round`'s model from its decrypted sum: the FedAvg (or server optimizer) step, or for a statistics round
   * the previous model unchanged, its statistics decoded and kept beside it.
   */
  private async nextModel(studyId: string, round: number, study: GlobalModelStudy, sum: Float64Array, cohort: number): Promise<GlobalModelState> {
    const previous = await this.model(studyId, round - 1, study);
    if (!isStatisticsRound(study, round)) return nextGlobalModel(previous, sum, cohort, study.serverOptimizer);
    const plan = studyStatisticsPlan(study);
    const decoded = decodeConsortiumStatistics(plan, sum.subarray(0, statisticsVectorLength(plan)));
    await this.cache.writeStatistics(studyId, round, statisticsReportJson(decoded).json);
    return previous;
  }

  /**
   * A decrypted aggregate is used only when every ciphertext carries exactly the named contributors' tags: its sum
   * (parameters or statistics, the weight, the contribution slots) then.
   */
  private checkAggregate(
    studyId: string,
    round: number,
    study: GlobalModelStudy,
    header: federation.ModelRef,
    decrypted: { tagged: Float64Array; tagKey: Uint8Array; valuesPerCiphertext: number },
  ): Float64Array {
    const { tagged, tagKey, valuesPerCiphertext } = decrypted;
    const parameters = roundPayloadLength(study, round, parameterCount(study.model));
    const payloadLength = parameters + 1 + header.cohort.length;
    const ref = { cohort: header.cohort, contributors: header.contributors, round };
    const content = aggregateContentRefusal(
      tagProblems(tagged, valuesPerCiphertext, tagKey, { studyId, round }, header.contributors),
      untagVector(tagged, payloadLength, valuesPerCiphertext).subarray(parameters + 1),
      ref,
    );
    if (content) {
      tagged.fill(0);
      throw new PolicyRefusalError(content);
    }
    return untagVector(tagged, payloadLength, valuesPerCiphertext);
  }

  /** The initial model carries no data, so the site makes it itself and refuses a coordinator's other one. */
  private checkInitial(weights: Float32Array, spec: ModelSpec, studyId: string): void {
    const expected = sha256Hex(float32ToBytes(initialWeights(spec)));
    const actual = sha256Hex(float32ToBytes(weights));
    if (actual !== expected) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH,
        message: `the initial model of study ${studyId} is not the one its seed makes (sha256 ${actual}, expected ${expected})`,
      });
    }
  }
}
