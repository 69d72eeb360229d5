import { Inject, Injectable } from '@nestjs/common';
import type {
  Metadata,
  sendUnaryData,
  ServerErrorResponse,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
} from '@grpc/grpc-js';
import {
  AUDIT_KIND_OF_SITE_MESSAGE,
  AUDIT_KIND_SITE_MESSAGE_REFUSED,
  createLogger,
  encodeMessage,
  federation,
  sha256Hex,
  type SiteMessageKind,
} from '@federa/shared';
import { z } from 'zod';
import { BLOB_STORE, DATABASE, SITE_IDENTITY } from '../app/tokens.js';
import { AuditLog } from '../audit/audit-log.js';
import type { BlobStore } from '../blobs/index.js';
import { CoordinatorMetrics } from '../metrics/index.js';
import type { Database } from '../persistence/index.js';
import { RoundsService } from '../rounds/rounds.service.js';
import { SiteReports } from '../rounds/site-reports.js';
import { UploadReceiver } from '../rounds/upload-receiver.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { DatasetSummaries } from '../sites/dataset-summaries.js';
import { StudiesService } from '../studies/studies.service.js';
import { KeyEpochs, listedUpdateC1 } from '../multiparty/index.js';
import { checkStudyRef, FederationError, GrpcStatus, isTransientDatabaseError } from './federation-error.js';
import type { SiteIdentity } from './site-identity.js';

export const COORDINATOR_VERSION = '0.1.0';
/** Data chunks of a download made in memory (an update's c1 part): the size the blob store streams files in. */
const DOWNLOAD_CHUNK_BYTES = 256 * 1024;
export const AGENT_INSTANCE_METADATA = 'x-federa-agent-instance';

const policySummarySchema = z
  .object({
    requireEncryption: z.boolean(),
    minParticipants: z.int().min(0).max(10_000),
    maxRounds: z.int().min(0).max(1_000_000),
    shareMetrics: z.enum(['none', 'aggregate', 'full']),
  })
  .strict();

/** The fields of a failed call's log line: the RPC and, where known, the site, study and round it concerned. */
interface CallFields {
  rpc?: string;
  siteId?: string | undefined;
  studyId?: string | undefined;
  round?: number | undefined;
}

/** What the audit record of a site message says besides its hash: which study and round, and a few facts. */
interface MessageFacts {
  studyId?: string;
  round?: number;
  details?: Record<string, unknown>;
}

/**
 * The gRPC FederationService: thin handlers that identify the caller, hand over to the services, and record every
 * site message (accepted or refused) in the audit log with the SHA-256 of its protobuf bytes, which is what the
 * site's privacy ledger records too, so the two can be reconciled.
 */
@Injectable()
export class FederationHandlers {
  private readonly log = createLogger('federation');

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(RoundsService) private readonly rounds: RoundsService,
    @Inject(UploadReceiver) private readonly uploads: UploadReceiver,
    @Inject(SiteReports) private readonly reports: SiteReports,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(SITE_IDENTITY) private readonly identity: SiteIdentity,
    @Inject(DatasetSummaries) private readonly datasets: DatasetSummaries,
    @Inject(StudiesService) private readonly studies: StudiesService,
    @Inject(AuditLog) private readonly audit: AuditLog,
    @Inject(CoordinatorMetrics) private readonly metrics: CoordinatorMetrics,
    @Inject(KeyEpochs) private readonly epochs: KeyEpochs,
  ) {}

  implementation(): federation.FederationServiceServer {
    return {
      register: (call, callback) =>
        this.unary('Register', call, callback, 'registration', federation.RegisterRequest, (r) => ({ details: registrationFacts(r) }), (siteId) =>
          this.register(siteId, call.request),
        ),
      streamTasks: (call) => this.settle(this.streamTasks(call)),
      downloadModel: (call) => this.settle(this.downloadModel(call)),
      uploadUpdate: (call, callback) => this.settle(this.uploadUpdate(call, callback)),
      queryUpload: (call, callback) =>
        this.unary('QueryUpload', call, callback, null, federation.UploadQuery, () => ({}), async (siteId) => {
          await this.requireRegistered(siteId);
          return this.uploads.progress(siteId, call.request);
        }),
      reportMetrics: (call, callback) =>
        this.unary(
          'ReportMetrics',
          call,
          callback,
          'metrics',
          federation.MetricsReport,
          (r) => ({
            studyId: r.studyId,
            round: r.round,
            details: {
              metric: federation.metricKindToJSON(r.kind),
              samplesShared: r.samples !== undefined,
              // The privacy a site says it spent belongs in the log an auditor reads without the database.
              ...(r.privacyEpsilon !== undefined ? { privacyEpsilon: r.privacyEpsilon, privacyDelta: r.privacyDelta ?? null } : {}),
            },
          }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            await this.reports.recordMetrics(siteId, call.request);
            return {};
          },
        ),
      reportRoundFailure: (call, callback) =>
        this.unary(
          'ReportRoundFailure',
          call,
          callback,
          'refusal',
          federation.RoundFailure,
          (r) => ({ studyId: r.studyId, round: r.round, details: { failure: federation.failureReasonToJSON(r.reason) } }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            await this.reports.recordFailure(siteId, call.request);
            return {};
          },
        ),
      reportRefusal: (call, callback) =>
        this.unary(
          'ReportRefusal',
          call,
          callback,
          'refusal',
          federation.Refusal,
          (r) => ({
            studyId: r.studyId,
            round: r.round,
            details: { task: federation.taskKindToJSON(r.task), reason: federation.refusalReasonToJSON(r.reason), reasonMessage: r.message, studyHash: r.studyHash },
          }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            await this.reports.recordRefusal(siteId, call.request);
            return {};
          },
        ),
      reportEvaluation: (call, callback) =>
        this.unary(
          'ReportEvaluation',
          call,
          callback,
          'evaluation',
          federation.EvaluationReport,
          (r) => ({ studyId: r.studyId, round: r.round, details: { shared: r.figures ? 'figures' : 'counts' } }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            await this.reports.recordEvaluation(siteId, call.request);
            return {};
          },
        ),
      reportStatistics: (call, callback) =>
        this.unary('ReportStatistics', call, callback, 'statistics', federation.StatisticsReport, (r) => ({ studyId: r.studyId, round: r.round, details: { sha256: r.sha256 } }), async (siteId) => {
          await this.requireRegistered(siteId);
          return this.reports.recordStatistics(siteId, call.request);
        }),
      reportDatasetSummary: (call, callback) =>
        this.unary('ReportDatasetSummary', call, callback, 'dataset-summary', federation.DatasetSummary, (r) => ({ studyId: r.studyId }), async (siteId) => {
          await this.requireRegistered(siteId);
          await this.datasets.record(siteId, call.request);
          return {};
        }),
      heartbeat: (call, callback) =>
        this.unary('Heartbeat', call, callback, null, federation.HeartbeatRequest, () => ({}), async (siteId) =>
          this.heartbeat(siteId, agentInstance(call.metadata)),
        ),
      submitKeyShare: (call, callback) =>
        this.unary(
          'SubmitKeyShare',
          call,
          callback,
          'key-share',
          federation.KeyShareSubmission,
          (r) => ({ studyId: r.studyId, details: { epoch: r.epoch } }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            await this.epochs.submitShare(siteId, call.request);
            return { alreadyHeld: false };
          },
        ),
      submitEnvelopes: (call, callback) =>
        this.unary(
          'SubmitEnvelopes',
          call,
          callback,
          'key-envelopes',
          federation.EnvelopeSubmission,
          (r) => ({ studyId: r.studyId, details: { epoch: r.epoch, envelopes: r.envelopes.length } }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            await this.epochs.submitEnvelopes(siteId, call.request);
            return { alreadyHeld: false };
          },
        ),
      getKeyEpoch: (call, callback) =>
        this.unary('GetKeyEpoch', call, callback, null, federation.KeyEpochRequest, (r) => ({ studyId: r.studyId }), async (siteId) => {
          await this.requireRegistered(siteId);
          return this.epochs.state(siteId, call.request);
        }),
      submitKeySwitchShare: (call, callback) =>
        this.unary(
          'SubmitKeySwitchShare',
          call,
          callback,
          'key-switch-share',
          federation.KeySwitchShareSubmission,
          (r) => ({ studyId: r.studyId, round: r.round, details: { epoch: r.epoch, sumSha256: r.sumSha256 } }),
          async (siteId) => {
            await this.requireRegistered(siteId);
            return this.rounds.switching.submitShare(siteId, call.request);
          },
        ),
      downloadSum: (call) => this.settle(this.downloadSum(call)),
      downloadUpdateC1: (call) => this.settle(this.downloadUpdateC1(call)),
      listStudies: (call, callback) =>
        // The certificate says who is asking; a hospital reviews offers before its agent ever registers.
        this.unary('ListStudies', call, callback, null, federation.ListStudiesRequest, () => ({}), async (siteId) => ({
          studies: await this.studies.offeredTo(siteId),
        })),
    };
  }

  private async register(siteId: string, request: federation.RegisterRequest): Promise<federation.RegisterResponse> {
    const now = new Date();
    const policy = request.policy ? policySummarySchema.safeParse(request.policy) : undefined;
    if (policy && !policy.success) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'register policy: not a valid policy summary');
    const data = {
      lastSeenAt: now,
      status: 'registered',
      agentVersion: bounded(request.agentVersion, 64),
      backend: bounded(request.backend, 64),
      policy: policy?.data ?? undefined,
    };
    await this.db.prisma.site.upsert({ where: { id: siteId }, create: { id: siteId, registeredAt: now, ...data }, update: data });
    this.log.info({ siteId, agentVersion: data.agentVersion, backend: data.backend }, 'site registered');
    return { siteId, coordinatorVersion: COORDINATOR_VERSION };
  }

  /** lastSeenAt moves with heartbeats, written at most once a minute per site (the sessions hold the exact time). */
  private readonly persistedSeen = new Map<string, number>();

  private async heartbeat(siteId: string, instance: string): Promise<federation.HeartbeatResponse> {
    await this.requireRegistered(siteId);
    const attached = this.sessions.touch(siteId, instance);
    const now = Date.now();
    if (now - (this.persistedSeen.get(siteId) ?? 0) > 60_000) {
      this.persistedSeen.set(siteId, now);
      await this.db.prisma.site.update({ where: { id: siteId }, data: { lastSeenAt: new Date(now) } });
    }
    return { streamAttached: attached, serverTimeUnixMs: now };
  }

  private async streamTasks(call: ServerWritableStream<federation.StreamTasksRequest, federation.Task>): Promise<void> {
    let siteId: string | undefined;
    try {
      siteId = await this.caller(call, 'StreamTasks');
      await this.requireRegistered(siteId);
      this.sessions.attach(siteId, call, agentInstance(call.metadata));
    } catch (error) {
      if (siteId) await this.auditDenied(siteId, 'StreamTasks', {}, error);
      refuseStream(call, this.toStatus(error, { rpc: 'StreamTasks', siteId }));
    }
  }

  private async downloadModel(call: ServerWritableStream<federation.DownloadModelRequest, federation.ModelChunk>): Promise<void> {
    let siteId: string | undefined;
    let concerns: { studyId: string; round: number } | undefined;
    try {
      siteId = await this.caller(call, 'DownloadModel');
      await this.requireRegistered(siteId);
      const { studyId, round, offset } = call.request;
      checkStudyRef(studyId, round);
      concerns = { studyId, round };
      // Least privilege: a site reads the models of studies it takes part in, and no other.
      const participates = await this.db.prisma.round.count({ where: { studyId, assignedSites: { has: siteId } } });
      if (participates === 0) {
        throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} takes no part in study ${studyId}; its models are not for this site`);
      }
      const model = await this.db.prisma.modelVersion.findUnique({ where: { studyId_round: { studyId, round } } });
      if (!model) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} has no global model for round ${round}`);
      if (offset > model.sizeBytes) {
        throw new FederationError(GrpcStatus.OUT_OF_RANGE, `offset ${offset} is past the model's ${model.sizeBytes} bytes`);
      }
      const header = await this.rounds.modelRef(studyId, round);
      await this.audit.append({
        kind: 'model.downloaded',
        actor: `site:${siteId}`,
        siteId,
        studyId,
        round,
        details: { by: siteId, kind: model.kind, sha256: model.sha256, bytes: model.sizeBytes, offset },
      });
      await write(call, { part: { $case: 'header', value: header } });
      // Streamed from the file as the site takes it: memory holds a chunk per download, not the model.
      for await (const chunk of this.blobs.createReadStream(model.sha256, { start: offset })) {
        await write(call, { part: { $case: 'data', value: chunk as Buffer } });
      }
      call.end();
    } catch (error) {
      // Audited before the refusal goes back, so whoever sees the refusal finds its record.
      if (siteId) await this.auditDenied(siteId, 'DownloadModel', concerns ?? {}, error);
      refuseStream(call, this.toStatus(error, { rpc: 'DownloadModel', siteId, ...concerns }));
    }
  }

  /** The c1 part of a round's sum, for the members of its key epoch to compute their shares from. */
  private downloadSum(call: ServerWritableStream<federation.DownloadSumRequest, federation.SumChunk>): Promise<void> {
    return this.streamSwitchPart(call, 'DownloadSum', async (siteId) => {
      const { sha256 } = await this.rounds.switching.sumFor(siteId, call.request.studyId, call.request.round);
      const size = (await this.blobs.size(sha256)) ?? 0;
      return { what: 'the sum', sha256, size, chunks: (offset) => this.blobs.createReadStream(sha256, { start: offset }) };
    });
  }

  /** The c1 part of an update a switching round lists, for a member of its key epoch to check the sum with. */
  private downloadUpdateC1(call: ServerWritableStream<federation.DownloadUpdateC1Request, federation.SumChunk>): Promise<void> {
    return this.streamSwitchPart(call, 'DownloadUpdateC1', async (siteId) => {
      const { sha256, bytes } = await listedUpdateC1({ db: this.db, blobs: this.blobs, setup: this.epochs.setup() }, siteId, call.request);
      return { what: 'the c1 part', sha256, size: bytes.byteLength, chunks: (offset) => chunksOf(bytes, offset) };
    });
  }

  /** A download of a switching round's part (a header, then data from `offset`); a refusal is audited as DownloadModel's. */
  private async streamSwitchPart(
    call: ServerWritableStream<{ studyId: string; round: number; offset: number }, federation.SumChunk>,
    rpc: string,
    source: (siteId: string) => Promise<{ what: string; sha256: string; size: number; chunks: (offset: number) => AsyncIterable<unknown> | Iterable<unknown> }>,
  ): Promise<void> {
    let siteId: string | undefined;
    let concerns: { studyId: string; round: number } | undefined;
    try {
      siteId = await this.caller(call, rpc);
      await this.requireRegistered(siteId);
      const { studyId, round, offset } = call.request;
      checkStudyRef(studyId, round);
      concerns = { studyId, round };
      const { what, sha256, size, chunks } = await source(siteId);
      if (offset > size) throw new FederationError(GrpcStatus.OUT_OF_RANGE, `offset ${offset} is past ${what}'s ${size} bytes`);
      await write(call, { part: { $case: 'header', value: { sha256, sizeBytes: size } } });
      for await (const chunk of chunks(offset)) {
        await write(call, { part: { $case: 'data', value: chunk as Buffer } });
      }
      call.end();
    } catch (error) {
      if (siteId) await this.auditDenied(siteId, rpc, concerns ?? {}, error);
      refuseStream(call, this.toStatus(error, { rpc, siteId, ...concerns }));
    }
  }

  private async uploadUpdate(
    call: ServerReadableStream<federation.UpdateChunk, federation.UploadReceipt>,
    callback: sendUnaryData<federation.UploadReceipt>,
  ): Promise<void> {
    let siteId: string | undefined;
    try {
      siteId = await this.caller(call, 'UploadUpdate');
      await this.requireRegistered(siteId);
      const receipt = await this.uploads.receive(siteId, call);
      this.metrics.uploadAccepted();
      callback(null, receipt);
    } catch (error) {
      if (siteId && error instanceof FederationError) {
        // Refused before the whole of it arrived (a stopped study, a closed round), the update is named by the SHA-256
        // its header declared: the site's ledger then reconciles it as refused, not as missing.
        await this.auditRefused(siteId, 'update', error.received ?? error.declared ?? null, error.concerns ?? {}, error, error.received ? undefined : error.declared);
      }
      const status = this.toStatus(error, { rpc: 'UploadUpdate', siteId, ...(error instanceof FederationError ? error.concerns : {}) });
      this.metrics.uploadRefused(GrpcStatus[status.code ?? GrpcStatus.UNKNOWN] ?? 'UNKNOWN');
      callback(status);
    }
  }

  /**
   * Handlers answer every call themselves (a status for any failure); this only keeps a bug in one from becoming an
   * unhandled rejection, which would stop the process.
   */
  private settle(handled: Promise<void>): void {
    handled.catch((error: unknown) => this.log.error({ err: error }, 'a federation handler failed without answering'));
  }

  /** A unary call: identify the caller, do the work, and audit the message (kind null: a request that carries no data). */
  private unary<Req, Res>(
    rpc: string,
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    kind: SiteMessageKind | null,
    codec: { encode(message: Req): { finish(): Uint8Array } },
    facts: (request: Req) => MessageFacts,
    work: (siteId: string) => Promise<Res>,
  ): void {
    this.settle(this.answer(rpc, call, callback, kind, codec, facts, work));
  }

  private async answer<Req, Res>(
    rpc: string,
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    kind: SiteMessageKind | null,
    codec: { encode(message: Req): { finish(): Uint8Array } },
    facts: (request: Req) => MessageFacts,
    work: (siteId: string) => Promise<Res>,
  ): Promise<void> {
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
  private async caller(call: Parameters<SiteIdentity['siteOf']>[0], rpc: string): Promise<string> {
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

  private async auditRefused(
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
  private async auditDenied(siteId: string, rpc: string, concerns: { studyId?: string | undefined; round?: number | undefined }, error: unknown): Promise<void> {
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

  private async requireRegistered(siteId: string): Promise<void> {
    const site = await this.db.prisma.site.findUnique({ where: { id: siteId } });
    if (!site) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} must call Register first`);
  }

  /** The status a failed call answers with; `about` (the call, and the site, study and round it concerned) goes in the log line. */
  private toStatus(error: unknown, about: CallFields = {}): ServerErrorResponse {
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

/** Which agent process a call comes from (random per process; empty from tools and tests that send none). */
function agentInstance(metadata: Metadata): string {
  const value = metadata.get(AGENT_INSTANCE_METADATA)[0];
  return typeof value === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(value) ? value : '';
}

function registrationFacts(request: federation.RegisterRequest): Record<string, unknown> {
  return {
    agentVersion: bounded(request.agentVersion, 64),
    backend: bounded(request.backend, 64),
    encodings: request.supportedEncodings.map((e) => federation.updateEncodingToJSON(e)),
    policy: request.policy ?? null,
  };
}

function bounded(value: string, max: number): string {
  return value.length > max ? `${value.slice(0, max)}...` : value;
}

/**
 * Ends a server-streaming call with a status the client receives. grpc-js's destroy() drops the status: the client
 * would wait for its own deadline without learning why.
 */
function refuseStream(call: ServerWritableStream<unknown, unknown>, status: ServerErrorResponse): void {
  call.emit('error', status);
}

/**
 * Writes one message and waits until the transport took it: one chunk in flight per download. (Waiting only for
 * 'drain' would let the object-mode stream queue 16 chunks, 4 MiB, per download: a hundred sites fetching a model
 * at once would hold 400 MiB.)
 */
function write<T>(call: ServerWritableStream<unknown, T>, message: T): Promise<void> {
  return new Promise((resolve, reject) => {
    call.write(message, (error: Error | null | undefined) => (error ? reject(error) : resolve()));
  });
}

/** `bytes` from `offset` in DOWNLOAD_CHUNK_BYTES views (no copies). */
function* chunksOf(bytes: Uint8Array, offset: number): Generator<Buffer> {
  for (let at = offset; at < bytes.byteLength; at += DOWNLOAD_CHUNK_BYTES) {
    yield Buffer.from(bytes.buffer, bytes.byteOffset + at, Math.min(DOWNLOAD_CHUNK_BYTES, bytes.byteLength - at));
  }
}
