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

/** The largest round a database row can hold; the wire allows uint32. */
const MAX_ROUND = 2_147_483_647;
const STUDY_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/** Refuses, before anything is looked up or stored, a study id or round no coordinator ever issued. */
export function checkStudyRef(studyId: string, round?: number): void {
  if (!STUDY_ID.test(studyId)) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `study_id: "${studyId.slice(0, 80)}" is not a study id (1-64 letters, digits and "-")`);
  }
  if (round !== undefined && (!Number.isInteger(round) || round < 0 || round > MAX_ROUND)) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `round: ${round} is outside 0..${MAX_ROUND}`);
  }
}

export { GrpcStatus };
