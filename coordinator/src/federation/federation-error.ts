import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * An error a site is meant to read: carries the gRPC status it travels with, so every refusal (late,
 * duplicate, wrong round, malformed payload) reaches the site as a clear status and message, not INTERNAL.
 */
export class FederationError extends Error {
  override readonly name = 'FederationError';
  /** For the audit record of the refusal: the SHA-256 and size of what was refused, when the whole of it arrived. */
  received?: { sha256: string; bytes: number };

  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

export { GrpcStatus };
