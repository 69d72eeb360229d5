import { bytesToFloat32, federation, ownContributionProblem } from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';

/** Bytes an encoding needs for a vector of `vectorLength` values, where the size is fixed by the encoding. */
export function expectedPayloadBytes(encoding: federation.UpdateEncoding, vectorLength: number): number | undefined {
  if (encoding === federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32) return vectorLength * 4;
  return undefined;
}

/** Where a round's update vectors keep their weight and contribution slots. */
export interface VectorLayout {
  parameters: number;
  cohort: readonly string[];
}

/**
 * Checks a received plaintext update before it is counted: right length, every value finite, the weight slot
 * positive and the contribution slots naming exactly the sender. A payload that fails is refused and never touches
 * the round's sum.
 */
export function validatePlaintextUpdate(bytes: Uint8Array, layout: VectorLayout, siteId: string): Float32Array {
  const vectorLength = layout.parameters + 1 + layout.cohort.length;
  let vector: Float32Array;
  try {
    vector = bytesToFloat32(bytes, 'update payload');
  } catch (error) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, (error as Error).message);
  }
  if (vector.length !== vectorLength) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      `update payload holds ${vector.length} values, the round needs ${vectorLength} (parameters + weight + one slot per cohort site)`,
    );
  }
  for (let i = 0; i < vector.length; i++) {
    if (!Number.isFinite(vector[i] as number)) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `update payload value ${i} is not a finite number`);
    }
  }
  const weight = vector[layout.parameters] as number;
  if (!(weight > 0)) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `update payload weight slot must be positive, got ${weight}`);
  }
  const problem = ownContributionProblem(vector.subarray(layout.parameters + 1), layout.cohort, siteId);
  if (problem) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `update payload contribution slots refused: ${problem}`);
  return vector;
}
