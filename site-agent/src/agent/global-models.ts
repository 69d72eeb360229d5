import {
  applyAggregate,
  bytesToFloat32,
  federation,
  float32ToBytes,
  initialWeights,
  sha256Hex,
  type CkksContext,
  type ModelSpec,
} from '@federa/shared';
import type { FederationClient } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import { aggregateRefusal, PolicyRefusalError } from '../policy/index.js';
import type { ModelCache } from './model-cache.js';

export interface KeyHolder {
  context: CkksContext;
  secretKey: Uint8Array;
}

/**
 * The global weights after each round, as this site computes them. Round 0 is made here from the study's seed
 * (and must be what the coordinator published); a plaintext round's weights are downloaded; an encrypted round's
 * aggregate is downloaded, its contribution slots alone are decrypted and checked against the site policy, and only
 * then the rest is decrypted and applied to the previous round's weights.
 */
export class GlobalModels {
  constructor(
    private readonly client: FederationClient,
    private readonly cache: ModelCache,
    private readonly keys: () => Promise<KeyHolder>,
    private readonly policy: SitePolicy,
  ) {}

  path(studyId: string, round: number): string {
    return this.cache.path(studyId, round);
  }

  async weights(studyId: string, round: number, spec: ModelSpec, known?: federation.ModelRef): Promise<Float32Array> {
    const cached = await this.cache.read(studyId, round);
    if (cached) return cached;
    const artifact = known
      ? { header: known, bytes: await this.client.downloadModel(known) }
      : await this.client.downloadArtifact(studyId, round);
    let weights: Float32Array;
    switch (artifact.header.kind) {
      case federation.ModelKind.MODEL_KIND_WEIGHTS:
        weights = bytesToFloat32(artifact.bytes, `global model of round ${round}`);
        if (round === 0) this.checkInitial(weights, spec, studyId);
        else if (this.policy.requireEncryption) {
          throw new PolicyRefusalError({
            reason: federation.RefusalReason.REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED,
            message: `round ${round} of study ${studyId} was published as plain weights and this site's policy requires encryption`,
          });
        }
        break;
      case federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE:
        weights = await this.decryptAggregate(studyId, round, spec, artifact.header, artifact.bytes);
        break;
      default:
        throw new Error(`round ${round} of study ${studyId} published an artifact of unknown kind ${federation.modelKindToJSON(artifact.header.kind)}`);
    }
    await this.cache.write(studyId, round, weights);
    return weights;
  }

  private async decryptAggregate(
    studyId: string,
    round: number,
    spec: ModelSpec,
    header: federation.ModelRef,
    bytes: Uint8Array,
  ): Promise<Float32Array> {
    const { context, secretKey } = await this.keys();
    if (header.cohort.length === 0) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH,
        message: `the aggregate of round ${round} comes without its cohort, so its contributions cannot be checked`,
      });
    }
    const slots = context.decryptTail(bytes, secretKey, header.cohort.length);
    const refusal = aggregateRefusal(slots, { cohort: header.cohort, contributors: header.contributors, round }, this.policy);
    if (refusal) throw new PolicyRefusalError(refusal);
    const previous = await this.weights(studyId, round - 1, spec);
    return applyAggregate(previous, context.decryptVector(bytes, secretKey), header.cohort.length);
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
