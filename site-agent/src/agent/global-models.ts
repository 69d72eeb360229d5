import {
  applyAggregate,
  bytesToFloat32,
  federation,
  float32ToBytes,
  initialWeights,
  parameterCount,
  sha256Hex,
  tagProblems,
  untagVector,
  type CkksContext,
  type ModelSpec,
} from '@federa/shared';
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

/**
 * The global weights after each round, as this site computes them. Round 0 is made here from the study's seed (and
 * must be what the coordinator published). A later round's aggregate is used only if the coordinator says it sums
 * at least the policy's minParticipants distinct sites of the round's cohort (checked before decrypting anything),
 * and, for an encrypted round, if every ciphertext carries exactly those sites' contribution tags (checked on the
 * decrypted values, which are dropped unused otherwise).
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

  async weights(studyId: string, round: number, spec: ModelSpec, known?: federation.ModelRef): Promise<Float32Array> {
    const cached = await this.cache.read(studyId, round);
    if (cached) return cached;
    // A download changes nothing at the coordinator, so it is simply made again while the coordinator is away.
    const artifact = await this.retry.call(`model of round ${round}`, async () =>
      known ? { header: known, bytes: await this.client.downloadModel(known) } : this.client.downloadArtifact(studyId, round),
    );
    const header = artifact.header;
    if (round > 0) {
      const claim = aggregateClaimRefusal({ cohort: header.cohort, contributors: header.contributors, round }, this.policy);
      if (claim) throw new PolicyRefusalError(claim);
    }
    let weights: Float32Array;
    switch (header.kind) {
      case federation.ModelKind.MODEL_KIND_WEIGHTS:
        if (round > 0 && this.policy.requireEncryption) {
          throw new PolicyRefusalError({
            reason: federation.RefusalReason.REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED,
            message: `round ${round} of study ${studyId} was published as plain weights and this site's policy requires encryption`,
          });
        }
        weights = bytesToFloat32(artifact.bytes, `global model of round ${round}`);
        if (round === 0) this.checkInitial(weights, spec, studyId);
        break;
      case federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE: {
        const { context, secretKey, tagKey } = await this.keys();
        weights = await this.checkAggregate(studyId, round, spec, header, { tagged: context.decryptVector(artifact.bytes, secretKey), tagKey, valuesPerCiphertext: context.valuesPerCiphertext });
        break;
      }
      case federation.ModelKind.MODEL_KIND_MULTIPARTY_AGGREGATE: {
        if (!this.multiparty) throw new Error(`round ${round} of study ${studyId} was aggregated with multiparty keys, which needs this site's kit`);
        weights = await this.checkAggregate(studyId, round, spec, header, await this.multiparty.decryptModel(studyId, header, artifact.bytes));
        break;
      }
      default:
        throw new Error(`round ${round} of study ${studyId} published an artifact of unknown kind ${federation.modelKindToJSON(header.kind)}`);
    }
    await this.cache.write(studyId, round, weights);
    return weights;
  }

  /** A decrypted aggregate is used only when every ciphertext carries exactly the named contributors' tags. */
  private async checkAggregate(
    studyId: string,
    round: number,
    spec: ModelSpec,
    header: federation.ModelRef,
    decrypted: { tagged: Float64Array; tagKey: Uint8Array; valuesPerCiphertext: number },
  ): Promise<Float32Array> {
    const { tagged, tagKey, valuesPerCiphertext } = decrypted;
    const parameters = parameterCount(spec);
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
    const previous = await this.weights(studyId, round - 1, spec);
    return applyAggregate(previous, untagVector(tagged, payloadLength, valuesPerCiphertext), header.cohort.length);
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
