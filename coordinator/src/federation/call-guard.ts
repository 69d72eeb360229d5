import type { sendUnaryData, ServerErrorResponse, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { AUDIT_KIND_OF_SITE_MESSAGE, AUDIT_KIND_SITE_MESSAGE_REFUSED, createLogger, encodeMessage, sha256Hex, type SiteMessageKind } from '@federa/shared';
import type { AuditLog } from '../audit/audit-log.js';
import type { Database } from '../persistence/index.js';
import { checkStudyRef, FederationError, GrpcStatus, isTransientDatabaseError } from './federation-error.js';
import type { SiteIdentity } from './site-identity.js';

/** The fields of a failed call's log line: the RPC and, where known, the site, study and round it concerned. */
export interface CallFields {
  rpc?: string;
  siteId?: string | undefined;
  studyId?: string | undefined;
  round?: number | undefined;
}

/** What the audit record of a site message says besides its hash: which study and round, and a few facts. */
export interface MessageFacts {
  studyId?: string;
  round?: number;
  details?: Record<string, unknown>;
}

/**
 * A unary call as its handler hands it over: the RPC's name, the call and its callback, the kind of site message it
 * carries (null: none, such as a heartbeat), the codec that gives the message's bytes for the audit record, what the
 * record says of it, and the work to do for the identified site.
 */
type UnaryArgs<Req, Res> = [
  rpc: string,
  call: ServerUnaryCall<Req, Res>,
  callback: sendUnaryData<Res>,
  kind: SiteMessageKind | null,
  codec: { encode(message: Req): { finish(): Uint8Array } },
  facts: (request: Req) => MessageFacts,
  work: (siteId: string) => Promise<Res>,
];

/** The study and round a call concerned, as far as they are known when it fails. */
export interface CallConcerns {
  studyId?: string | undefined;
  round?: number | undefined;
}

/**
 * What every federation call goes through, whatever it asks for: who the caller is and whether it registered, the
 * audit record of its message (accepted or refused) or of a denial, and the status a failure answers with.
 */
export class CallGuard {
  private readonly log = createLogger('federation');

  constructor(
    private readonly db: Database,
    private readonly identity: SiteIdentity,
    private readonly audit: AuditLog,
  ) {}

  /**
   * Handlers answer every call themselves (a status for any failure); this only keeps a bug in one from becoming an
   * unhandled rejection, which would stop the process.
   */
  settle(handled: Promise<void>): void {
    handled.catch((error: unknown) => this.log.error({ err: error }, 'a federation handler failed without answering'));
  }

  /** A unary call: identify the caller, do the work, and audit the message (kind null: a request that carries no data). */
  unary<Req, Res>(...args: UnaryArgs<Req, Res>): void {
    this.settle(this.answer(...args));
  }

  private async answer<Req, Res>(...[rpc, call, callback, kind, codec, facts, work]: UnaryArgs<Req, Res>): Promise<void> {
    let siteId: string | undefined;
    const bytes = kind ? encodeMessage(codec, call.request) : undefined;
    const received = bytes ? { sha256: sha256Hex(bytes), bytes: bytes.byteLength } : null;
    // Which study and round the message concerns, for the log line of a refusal; set once they passed the check.
    let concerns: { studyId?: string; round?: number } = {};
    try {
      siteId = await this.caller(call, rpc);
      const ref = facts(call.request);
      if (ref.studyId !== undefined) checkStudyRef(ref.studyId, ref.round);
      concerns = { studyId: ref.studyId, round: ref.round };
      const response = await work(siteId);
      if (kind && received) {
        const { studyId, round, details } = facts(call.request);
        await this.audit.append({
          kind: AUDIT_KIND_OF_SITE_MESSAGE[kind],
          actor: `site:${siteId}`,
          siteId,
          studyId: studyId ?? null,
          round: round ?? null,
          details: { message: kind, ...received, ...details },
        });
      }
      callback(null, response);
    } catch (error) {
      if (kind && siteId && error instanceof FederationError) await this.auditRefused(siteId, kind, received, facts(call.request), error);
      // A call that carries no data has no message record; a denied one is still audited.
      else if (!kind && siteId) await this.auditDenied(siteId, rpc, concerns, error);
      callback(this.toStatus(error, { rpc, siteId, ...concerns }));
    }
  }

  /** Who is calling; a refused identity (unknown, revoked) is audited before the refusal goes back. */
  async caller(call: Parameters<SiteIdentity['siteOf']>[0], rpc: string): Promise<string> {
    try {
      return this.identity.siteOf(call);
    } catch (error) {
      if (error instanceof FederationError) {
        const claimed = /site ([a-z0-9][a-z0-9-]{0,62})/.exec(error.message)?.[1] ?? null;
        await this.audit
          .append({
            kind: 'site.refused',
            actor: claimed ? `site:${claimed}` : 'anonymous',
            siteId: claimed,
            details: { rpc, code: GrpcStatus[error.code], reason: error.message },
          })
          .catch((auditError: unknown) => this.log.error({ err: auditError }, 'could not audit a refused site'));
      }
      throw error;
    }
  }

  async auditRefused(
    siteId: string,
    kind: SiteMessageKind,
    received: { sha256: string; bytes: number } | null,
    facts: MessageFacts,
    error: FederationError,
    declaredOnly?: { sha256: string; bytes: number },
  ): Promise<void> {
    await this.audit
      .append({
        kind: AUDIT_KIND_SITE_MESSAGE_REFUSED,
        actor: `site:${siteId}`,
        siteId,
        studyId: facts.studyId ?? null,
        round: facts.round ?? null,
        details: {
          message: kind,
          sha256: received?.sha256 ?? null,
          bytes: received?.bytes ?? null,
          code: GrpcStatus[error.code],
          reason: error.message,
          ...(declaredOnly ? { declaredByHeader: true } : {}),
        },
      })
      .catch((auditError: unknown) => this.log.error({ err: auditError }, 'could not audit a refused site message'));
  }

  /**
   * A known site denied something it is not entitled to (another study's model, a round it is not in): audited as a
   * refused site, like an unknown or revoked identity, not only logged. Other failures are not the site's overreach.
   */
  async auditDenied(siteId: string, rpc: string, concerns: CallConcerns, error: unknown): Promise<void> {
    if (!(error instanceof FederationError) || error.code !== GrpcStatus.PERMISSION_DENIED) return;
    const studyId = concerns.studyId ?? error.concerns?.studyId ?? null;
    const round = concerns.round ?? error.concerns?.round ?? null;
    await this.audit
      .append({
        kind: 'site.refused',
        actor: `site:${siteId}`,
        siteId,
        studyId,
        round,
        details: { rpc, studyId, round, code: GrpcStatus[error.code], reason: error.message },
      })
      .catch((auditError: unknown) => this.log.error({ err: auditError }, 'could not audit a denied site request'));
  }

  async requireRegistered(siteId: string): Promise<void> {
    const site = await this.db.prisma.site.findUnique({ where: { id: siteId } });
    if (!site) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} must call Register first`);
  }

  /** The status a failed call answers with; `about` (the call, and the site, study and round it concerned) goes in the log line. */
  toStatus(error: unknown, about: CallFields = {}): ServerErrorResponse {
    if (error instanceof FederationError) {
      // Messages can quote what a site sent: bounded, so a hostile value is neither logged nor echoed whole.
      const details = error.message.length > 2_000 ? `${error.message.slice(0, 2_000)}... (cut)` : error.message;
      this.log.warn({ ...about, code: GrpcStatus[error.code], reason: details }, 'call refused');
      return Object.assign(new Error(details), { code: error.code, details });
    }
    if (isTransientDatabaseError(error)) {
      this.log.warn({ ...about, reason: (error as Error).message }, 'database unavailable; the site will retry');
      const details = 'the coordinator\'s database is briefly unavailable; try again shortly';
      return Object.assign(new Error(details), { code: GrpcStatus.UNAVAILABLE, details });
    }
    this.log.error({ ...about, err: error }, 'federation call failed');
    const details = 'internal coordinator error; see the coordinator log';
    return Object.assign(new Error(details), { code: GrpcStatus.INTERNAL, details });
  }
}

/**
 * Ends a server-streaming call with a status the client receives. grpc-js's destroy() drops the status: the client
 * would wait for its own deadline without learning why.
 */
export function refuseStream(call: ServerWritableStream<unknown, unknown>, status: ServerErrorResponse): void {
  call.emit('error', status);
}

