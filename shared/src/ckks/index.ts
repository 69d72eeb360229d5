/**
 * CKKS codec: sites encrypt update vectors with the consortium's secret key, the coordinator adds the
 * ciphertexts without any key that decrypts, sites decrypt the sum. Parameters and error bound:
 * PARAMETERS.md.
 */
export { CkksContext, type CkksKeys, type CkksPayloadInfo } from './context.js';
export { CiphertextAccumulator, EncryptedSum, type ExpectedUpdate } from './accumulator.js';
export { CkksError, type CkksErrorCode } from './errors.js';
export {
  DEFAULT_CKKS_PARAMETERS,
  FRESH_NOISE_MAX,
  fedAvgErrorBound,
  maxSumCoefficient,
  parametersFingerprint,
  perSiteCoefficientErrorMax,
  sumErrorBound,
  type CkksParameters,
} from './params.js';
export type { PayloadKind } from './payload.js';
export { ckksKeyIdOf, ckksParametersOf } from './keys.js';
export { sealHeapBytes } from './seal.js';
export { CkksWorkerPool, ParallelAccumulator, type CkksWorkerPoolOptions } from './pool.js';
export {
  TAGS_PER_CIPHERTEXT,
  contributionTag,
  contributionTagKey,
  payloadPerCiphertext,
  tagProblems,
  taggedLength,
  tagVector,
  untagVector,
  type TagScope,
} from './tags.js';
export * from './multiparty/index.js';
