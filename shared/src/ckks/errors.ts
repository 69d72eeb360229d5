/**
 * Why a CKKS operation was refused. Callers (the coordinator's upload handler, the site's round loop) map
 * these to protocol statuses, so each cause has its own stable code rather than only a message.
 */
export type CkksErrorCode =
  /** Parameters that are insecure, inconsistent, or cannot hold the declared value range. */
  | 'INVALID_PARAMETERS'
  /** Bytes that are not a Federa CKKS payload, key or public-parameter blob at all. */
  | 'BAD_MAGIC'
  | 'UNSUPPORTED_VERSION'
  /** Payload or key made for other CKKS parameters. */
  | 'PARAMETER_MISMATCH'
  /** Payload encrypted under another consortium's key. */
  | 'KEY_MISMATCH'
  /** Fewer bytes than the header declares. */
  | 'TRUNCATED'
  /** Checksum, structure or coefficient range is wrong. */
  | 'CORRUPT'
  /** Vector length differs from the other payloads of the same sum. */
  | 'LENGTH_MISMATCH'
  /** result() of an accumulator to which nothing was added. */
  | 'EMPTY_SUM'
  /** More sites than the parameters' overflow bound allows. */
  | 'TOO_MANY_SITES'
  /** The same payload added twice to one sum. */
  | 'DUPLICATE'
  /** A ciphertext seed used twice under one key (it would reveal the difference of the two plaintexts). */
  | 'SEED_REUSED'
  /** A value outside the range the parameters were sized for (it would wrap around the modulus). */
  | 'VALUE_OUT_OF_RANGE'
  /** The accumulator was left unusable by an earlier internal failure. */
  | 'ACCUMULATOR_FAILED'
  /** Microsoft SEAL refused an operation. */
  | 'SEAL_ERROR';

export class CkksError extends Error {
  override readonly name = 'CkksError';

  constructor(
    readonly code: CkksErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
