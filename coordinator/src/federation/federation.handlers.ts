import { Inject, Injectable } from '@nestjs/common';
import type {
  sendUnaryData,
  ServerErrorResponse,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
} from '@grpc/grpc-js';
import { CHUNK_BYTES, createLogger, federation } from '@federa/shared';
import { BLOB_STORE, DATABASE } from '../app/tokens.js';
import type { BlobStore } from '../blobs/index.js';
import type { Database } from '../persistence/index.js';
import { modelRefOf, RoundsService } from '../rounds/rounds.service.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { DatasetSummaries } from '../sites/dataset-summaries.js';
import { FederationError, GrpcStatus } from './federation-error.js';
import { SITE_IDENTITY } from '../app/tokens.js';
import type { SiteIdentity } from './site-identity.js';

export const COORDINATOR_VERSION = '0.1.0';

/** The gRPC FederationService: thin handlers that identify the caller and hand over to the services. */
@Injectable()
export class FederationHandlers {
  private readonly log = createLogger('federation');

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(RoundsService) private readonly rounds: RoundsService,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(SITE_IDENTITY) private readonly identity: SiteIdentity,
    @Inject(DatasetSummaries) private readonly datasets: DatasetSummaries,
  ) {}

  implementation(): federation.FederationServiceServer {
    return {
      register: (call, callback) => void this.unary(call, callback, (siteId) => this.register(siteId, call.request)),
      streamTasks: (call) => void this.streamTasks(call),
      downloadModel: (call) => void this.downloadModel(call),
      uploadUpdate: (call, callback) => void this.uploadUpdate(call, callback),
      reportMetrics: (call, callback) =>
        void this.unary(call, callback, async (siteId) => {
          await this.requireRegistered(siteId);
          await this.rounds.recordMetrics(siteId, call.request);
          return {};
        }),
      reportRoundFailure: (call, callback) =>
        void this.unary(call, callback, async (siteId) => {
          await this.requireRegistered(siteId);
          await this.rounds.recordFailure(siteId, call.request);
          return {};
        }),
      reportEvaluation: (call, callback) =>
        void this.unary(call, callback, async (siteId) => {
          await this.requireRegistered(siteId);
          await this.rounds.recordEvaluation(siteId, call.request);
          return {};
        }),
      reportDatasetSummary: (call, callback) =>
        void this.unary(call, callback, async (siteId) => {
          await this.requireRegistered(siteId);
          await this.datasets.record(siteId, call.request);
          return {};
        }),
    };
  }

  private async register(siteId: string, request: federation.RegisterRequest): Promise<federation.RegisterResponse> {
    const now = new Date();
    await this.db.prisma.site.upsert({
      where: { id: siteId },
      create: { id: siteId, registeredAt: now, lastSeenAt: now, status: 'registered' },
      update: { lastSeenAt: now, status: 'registered' },
    });
    this.log.info({ siteId, agentVersion: request.agentVersion, backend: request.backend }, 'site registered');
    return { siteId, coordinatorVersion: COORDINATOR_VERSION };
  }

  private async streamTasks(call: ServerWritableStream<federation.StreamTasksRequest, federation.Task>): Promise<void> {
    try {
      const siteId = this.identity.siteOf(call);
      await this.requireRegistered(siteId);
      this.sessions.attach(siteId, call);
    } catch (error) {
      call.destroy(this.toStatus(error));
    }
  }

  private async downloadModel(call: ServerWritableStream<federation.DownloadModelRequest, federation.ModelChunk>): Promise<void> {
    try {
      const siteId = this.identity.siteOf(call);
      await this.requireRegistered(siteId);
      const { studyId, round, offset } = call.request;
      const model = await this.db.prisma.modelVersion.findUnique({ where: { studyId_round: { studyId, round } } });
      if (!model) {
        throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} has no global model for round ${round}`);
      }
      if (offset > model.sizeBytes) {
        throw new FederationError(GrpcStatus.OUT_OF_RANGE, `offset ${offset} is past the model's ${model.sizeBytes} bytes`);
      }
      const header = modelRefOf(studyId, model);
      await write(call, { part: { $case: 'header', value: header } });
      const bytes = await this.blobs.get(model.sha256);
      for (let at = offset; at < bytes.byteLength; at += CHUNK_BYTES) {
        const slice = bytes.subarray(at, Math.min(at + CHUNK_BYTES, bytes.byteLength));
        await write(call, { part: { $case: 'data', value: Buffer.from(slice.buffer, slice.byteOffset, slice.byteLength) } });
      }
      call.end();
    } catch (error) {
      call.destroy(this.toStatus(error));
    }
  }

  private async uploadUpdate(
    call: ServerReadableStream<federation.UpdateChunk, federation.UploadReceipt>,
    callback: sendUnaryData<federation.UploadReceipt>,
  ): Promise<void> {
    try {
      const siteId = this.identity.siteOf(call);
      await this.requireRegistered(siteId);
      callback(null, await this.rounds.receiveUpload(siteId, call));
    } catch (error) {
      callback(this.toStatus(error));
    }
  }

  private async unary<Req, Res>(
    call: ServerUnaryCall<Req, Res>,
    callback: sendUnaryData<Res>,
    work: (siteId: string) => Promise<Res>,
  ): Promise<void> {
    try {
      callback(null, await work(this.identity.siteOf(call)));
    } catch (error) {
      callback(this.toStatus(error));
    }
  }

  private async requireRegistered(siteId: string): Promise<void> {
    const site = await this.db.prisma.site.findUnique({ where: { id: siteId } });
    if (!site) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} must call Register first`);
  }

  private toStatus(error: unknown): ServerErrorResponse {
    if (error instanceof FederationError) {
      this.log.warn({ code: GrpcStatus[error.code], reason: error.message }, 'call refused');
      return Object.assign(new Error(error.message), { code: error.code, details: error.message });
    }
    this.log.error({ err: error }, 'federation call failed');
    const details = 'internal coordinator error; see the coordinator log';
    return Object.assign(new Error(details), { code: GrpcStatus.INTERNAL, details });
  }
}

/** Writes one message, waiting for the transport to drain so a large model is not buffered whole. */
function write<T>(call: ServerWritableStream<unknown, T>, message: T): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = call.write(message, (error: Error | null | undefined) => (error ? reject(error) : undefined));
    if (ok) resolve();
    else call.once('drain', () => resolve());
  });
}
