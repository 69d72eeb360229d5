import { bytesToFloat32, federation } from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';

/** Bytes an encoding needs for a vector of `vectorLength` values, where the size is fixed by the encoding. */
export function expectedPayloadBytes(encoding: federation.UpdateEncoding, vectorLength: number): number | undefined {
  if (encoding === federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32) return vectorLength * 4;
  return undefined;
}

/**
 * Checks a received plaintext update before it is counted: right length, every value finite and the weight
 * slot positive. A payload that fails is refused and never touches the round's sum.
 */
export function validatePlaintextUpdate(bytes: Uint8Array, vectorLength: number): Float32Array {
  let vector: Float32Array;
  try {
    vector = bytesToFloat32(bytes, 'update payload');
  } catch (error) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, (error as Error).message);
  }
  if (vector.length !== vectorLength) {
    throw new FederationError(
      GrpcStatus.INVALID_ARGUMENT,
      `update payload holds ${vector.length} values, the study's model needs ${vectorLength} (parameters + weight)`,
    );
  }
  for (let i = 0; i < vector.length; i++) {
    if (!Number.isFinite(vector[i] as number)) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `update payload value ${i} is not a finite number`);
    }
  }
  const weight = vector[vectorLength - 1] as number;
  if (!(weight > 0)) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `update payload weight slot must be positive, got ${weight}`);
  }
  return vector;
}
