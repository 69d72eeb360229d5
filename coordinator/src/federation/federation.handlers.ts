import { Inject, Injectable } from '@nestjs/common';
import type { Metadata, sendUnaryData, ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import { createLogger, federation } from '@federa/shared';
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
import { KeyEpochs } from '../multiparty/index.js';
import { CallGuard, refuseStream } from './call-guard.js';
import { FederationDownloads } from './downloads.js';
import { FederationError, GrpcStatus } from './federation-error.js';
import type { SiteIdentity } from './site-identity.js';

export const COORDINATOR_VERSION = '0.1.0';
export const AGENT_INSTANCE_METADATA = 'x-federa-agent-instance';

const policySummarySchema = z
  .object({
    requireEncryption: z.boolean(),
    minParticipants: z.int().min(0).max(10_000),
    maxRounds: z.int().min(0).max(1_000_000),
    shareMetrics: z.enum(['none', 'aggregate', 'full']),
  })
  .strict();

/**
 * The gRPC FederationService: thin handlers that identify the caller, hand over to the services, and record every
 * site message (accepted or refused) in the audit log with the SHA-256 of its protobuf bytes, which is what the
 * site's privacy ledger records too, so the two can be reconciled.
 */
@Injectable()
export class FederationHandlers {
  private readonly log = createLogger('federation');
  private readonly guard: CallGuard;
  private readonly downloads: FederationDownloads;

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
  ) {
    this.guard = new CallGuard(db, identity, audit);
    this.downloads = new FederationDownloads(this.guard, db, blobs, rounds, audit, epochs);
  }

  implementation(): federation.FederationServiceServer {
    return {
      register: (call, callback) =>
        this.guard.unary('Register', call, callback, 'registration', federation.RegisterRequest, (r) => ({ details: registrationFacts(r) }), (siteId) =>
          this.register(siteId, call.request),
        ),
      streamTasks: (call) => this.guard.settle(this.streamTasks(call)),
      downloadModel: (call) => this.guard.settle(this.downloads.downloadModel(call)),
      uploadUpdate: (call, callback) => this.guard.settle(this.uploadUpdate(call, callback)),
      queryUpload: (call, callback) =>
        this.guard.unary('QueryUpload', call, callback, null, federation.UploadQuery, () => ({}), async (siteId) => {
          await this.guard.requireRegistered(siteId);
          return this.uploads.progress(siteId, call.request);
        }),
      reportMetrics: (call, callback) =>
        this.guard.unary(
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
            await this.guard.requireRegistered(siteId);
            await this.reports.recordMetrics(siteId, call.request);
            return {};
          },
        ),
      reportRoundFailure: (call, callback) =>
        this.guard.unary(
          'ReportRoundFailure',
          call,
          callback,
          'refusal',
          federation.RoundFailure,
          (r) => ({ studyId: r.studyId, round: r.round, details: { failure: federation.failureReasonToJSON(r.reason) } }),
          async (siteId) => {
            await this.guard.requireRegistered(siteId);
            await this.reports.recordFailure(siteId, call.request);
            return {};
          },
        ),
      reportRefusal: (call, callback) =>
        this.guard.unary(
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
            await this.guard.requireRegistered(siteId);
            await this.reports.recordRefusal(siteId, call.request);
            return {};
          },
        ),
      reportEvaluation: (call, callback) =>
        this.guard.unary(
          'ReportEvaluation',
          call,
          callback,
          'evaluation',
          federation.EvaluationReport,
          (r) => ({ studyId: r.studyId, round: r.round, details: { shared: r.figures ? 'figures' : 'counts' } }),
          async (siteId) => {
            await this.guard.requireRegistered(siteId);
            await this.reports.recordEvaluation(siteId, call.request);
            return {};
          },
        ),
      reportStatistics: (call, callback) =>
        this.guard.unary('ReportStatistics', call, callback, 'statistics', federation.StatisticsReport, (r) => ({ studyId: r.studyId, round: r.round, details: { sha256: r.sha256 } }), async (siteId) => {
          await this.guard.requireRegistered(siteId);
          return this.reports.recordStatistics(siteId, call.request);
        }),
      reportDatasetSummary: (call, callback) =>
        this.guard.unary('ReportDatasetSummary', call, callback, 'dataset-summary', federation.DatasetSummary, (r) => ({ studyId: r.studyId }), async (siteId) => {
          await this.guard.requireRegistered(siteId);
          await this.datasets.record(siteId, call.request);
          return {};
        }),
      heartbeat: (call, callback) =>
        this.guard.unary('Heartbeat', call, callback, null, federation.HeartbeatRequest, () => ({}), async (siteId) =>
          this.heartbeat(siteId, agentInstance(call.metadata)),
        ),
      submitKeyShare: (call, callback) =>
        this.guard.unary(
          'SubmitKeyShare',
          call,
          callback,
          'key-share',
          federation.KeyShareSubmission,
          (r) => ({ studyId: r.studyId, details: { epoch: r.epoch } }),
          async (siteId) => {
            await this.guard.requireRegistered(siteId);
            await this.epochs.submitShare(siteId, call.request);
            return { alreadyHeld: false };
          },
        ),
      submitEnvelopes: (call, callback) =>
        this.guard.unary(
          'SubmitEnvelopes',
          call,
          callback,
          'key-envelopes',
          federation.EnvelopeSubmission,
          (r) => ({ studyId: r.studyId, details: { epoch: r.epoch, envelopes: r.envelopes.length } }),
          async (siteId) => {
            await this.guard.requireRegistered(siteId);
            await this.epochs.submitEnvelopes(siteId, call.request);
            return { alreadyHeld: false };
          },
        ),
      getKeyEpoch: (call, callback) =>
        this.guard.unary('GetKeyEpoch', call, callback, null, federation.KeyEpochRequest, (r) => ({ studyId: r.studyId }), async (siteId) => {
          await this.guard.requireRegistered(siteId);
          return this.epochs.state(siteId, call.request);
        }),
      submitKeySwitchShare: (call, callback) =>
        this.guard.unary(
          'SubmitKeySwitchShare',
          call,
          callback,
          'key-switch-share',
          federation.KeySwitchShareSubmission,
          (r) => ({ studyId: r.studyId, round: r.round, details: { epoch: r.epoch, sumSha256: r.sumSha256 } }),
          async (siteId) => {
            await this.guard.requireRegistered(siteId);
            return this.rounds.switching.submitShare(siteId, call.request);
          },
        ),
      downloadSum: (call) => this.guard.settle(this.downloads.downloadSum(call)),
      downloadUpdateC1: (call) => this.guard.settle(this.downloads.downloadUpdateC1(call)),
      listStudies: (call, callback) =>
        // The certificate says who is asking; a hospital reviews offers before its agent ever registers.
        this.guard.unary('ListStudies', call, callback, null, federation.ListStudiesRequest, () => ({}), async (siteId) => ({
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
    await this.guard.requireRegistered(siteId);
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
      siteId = await this.guard.caller(call, 'StreamTasks');
      await this.guard.requireRegistered(siteId);
      this.sessions.attach(siteId, call, agentInstance(call.metadata));
    } catch (error) {
      if (siteId) await this.guard.auditDenied(siteId, 'StreamTasks', {}, error);
      refuseStream(call, this.guard.toStatus(error, { rpc: 'StreamTasks', siteId }));
    }
  }

  private async uploadUpdate(
    call: ServerReadableStream<federation.UpdateChunk, federation.UploadReceipt>,
    callback: sendUnaryData<federation.UploadReceipt>,
  ): Promise<void> {
    let siteId: string | undefined;
    try {
      siteId = await this.guard.caller(call, 'UploadUpdate');
      await this.guard.requireRegistered(siteId);
      const receipt = await this.uploads.receive(siteId, call);
      this.metrics.uploadAccepted();
      callback(null, receipt);
    } catch (error) {
      if (siteId && error instanceof FederationError) {
        // Refused before the whole of it arrived (a stopped study, a closed round), the update is named by the SHA-256
        // its header declared: the site's ledger then reconciles it as refused, not as missing.
        await this.guard.auditRefused(siteId, 'update', error.received ?? error.declared ?? null, error.concerns ?? {}, error, error.received ? undefined : error.declared);
      }
      const status = this.guard.toStatus(error, { rpc: 'UploadUpdate', siteId, ...(error instanceof FederationError ? error.concerns : {}) });
      this.metrics.uploadRefused(GrpcStatus[status.code ?? GrpcStatus.UNKNOWN] ?? 'UNKNOWN');
      callback(status);
    }
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
