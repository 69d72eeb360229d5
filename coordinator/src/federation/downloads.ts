import type { ServerWritableStream } from '@grpc/grpc-js';
import type { federation } from '@federa/shared';
import type { AuditLog } from '../audit/audit-log.js';
import type { BlobStore } from '../blobs/index.js';
import type { Database } from '../persistence/index.js';
import type { RoundsService } from '../rounds/rounds.service.js';
import { listedUpdateC1, type KeyEpochs } from '../multiparty/index.js';
import { refuseStream, type CallGuard } from './call-guard.js';
import { checkStudyRef, FederationError, GrpcStatus } from './federation-error.js';

/** Data chunks of a download made in memory (an update's c1 part): the size the blob store streams files in. */
const DOWNLOAD_CHUNK_BYTES = 256 * 1024;

/**
 * The downloads a site makes: global models (and encrypted aggregates), and for multiparty rounds the c1 parts of a
 * sum and of the updates in it. Each streams a header, then data from the offset asked for, and only to a site that
 * takes part in the study; a refusal is audited before it goes back.
 */
export class FederationDownloads {
  constructor(
    private readonly guard: CallGuard,
    private readonly db: Database,
    private readonly blobs: BlobStore,
    private readonly rounds: RoundsService,
    private readonly audit: AuditLog,
    private readonly epochs: KeyEpochs,
  ) {}

  async downloadModel(call: ServerWritableStream<federation.DownloadModelRequest, federation.ModelChunk>): Promise<void> {
    let siteId: string | undefined;
    let concerns: { studyId: string; round: number } | undefined;
    try {
      siteId = await this.guard.caller(call, 'DownloadModel');
      await this.guard.requireRegistered(siteId);
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
      if (siteId) await this.guard.auditDenied(siteId, 'DownloadModel', concerns ?? {}, error);
      refuseStream(call, this.guard.toStatus(error, { rpc: 'DownloadModel', siteId, ...concerns }));
    }
  }

  /** The c1 part of a round's sum, for the members of its key epoch to compute their shares from. */
  downloadSum(call: ServerWritableStream<federation.DownloadSumRequest, federation.SumChunk>): Promise<void> {
    return this.streamSwitchPart(call, 'DownloadSum', async (siteId) => {
      const { sha256 } = await this.rounds.switching.sumFor(siteId, call.request.studyId, call.request.round);
      const size = (await this.blobs.size(sha256)) ?? 0;
      return { what: 'the sum', sha256, size, chunks: (offset) => this.blobs.createReadStream(sha256, { start: offset }) };
    });
  }

  /** The c1 part of an update a switching round lists, for a member of its key epoch to check the sum with. */
  downloadUpdateC1(call: ServerWritableStream<federation.DownloadUpdateC1Request, federation.SumChunk>): Promise<void> {
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
      siteId = await this.guard.caller(call, rpc);
      await this.guard.requireRegistered(siteId);
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
      if (siteId) await this.guard.auditDenied(siteId, rpc, concerns ?? {}, error);
      refuseStream(call, this.guard.toStatus(error, { rpc, siteId, ...concerns }));
    }
  }
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
