import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * An error a site is meant to read: carries the gRPC status it travels with, so every refusal (late,
 * duplicate, wrong round, malformed payload) reaches the site as a clear status and message, not INTERNAL.
 */
export class FederationError extends Error {
  override readonly name = 'FederationError';
  /** For the audit record of the refusal: the SHA-256 and size of what was refused, when the whole of it arrived. */
  received?: { sha256: string; bytes: number };
  /**
   * For the audit record of an upload refused before the whole of it arrived: the SHA-256 and size its header
   * declared, so that an auditor reconciling the site's ledger finds the refusal instead of a missing update.
   */
  declared?: { sha256: string; bytes: number };
  /** For the log line of the refusal: the study and round it concerned, once those were checked to be real ones. */
  concerns?: { studyId: string; round: number };

  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

/** Prisma's codes for a database that cannot be reached or dropped the connection, and driver messages saying so. */
const TRANSIENT_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2028']);
const TRANSIENT_MESSAGE = /ECONNREFUSED|ECONNRESET|EPIPE|Connection terminated|terminating connection|server closed the connection|the database system is (starting up|shutting down)|Can't reach database|timed out fetching a new connection/i;

/**
 * A failure that says nothing about the request: the database is briefly unreachable (restarting, failing over,
 * connections dropped). The site gets UNAVAILABLE and tries again; the round goes on once the database is back.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
    if (e instanceof Error && TRANSIENT_MESSAGE.test(e.message)) return true;
  }
  return false;
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
