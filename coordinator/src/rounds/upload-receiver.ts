import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { createLogger, failpoint, federation, receiptSignedBody, SHA256_HEX, signCanonical } from '@federa/shared';
import { BLOB_STORE, COORDINATOR_CONFIG, DATABASE } from '../app/tokens.js';
import type { CoordinatorConfig } from '../config/index.js';
import { AuditLog } from '../audit/audit-log.js';
import { PartialOffsetError, PartialUploads, type BlobInfo, type BlobStore, type PartialKey } from '../blobs/index.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { CoordinatorMetrics } from '../metrics/index.js';
import type { Database } from '../persistence/index.js';
import { recordSeeds, refuseReusedSeeds, seedConflict, type SeedDigests } from './ciphertext-seeds.js';
import { EncryptedAggregation } from './encrypted-aggregation.js';
import { RoundsService } from './rounds.service.js';
import { StudyLocks } from './study-locks.js';
import { Semaphore } from './semaphore.js';
import { baseStateConflict, checkUploadHeader, MAX_UPLOAD_BYTES, refuseDropped, roundTakingUploads, type UploadTarget } from './upload-header.js';
import { validatePlaintextUpdate } from './upload-payload.js';
import { checkMultipartyUpdate, KeyEpochs, type StoredContribution } from '../multiparty/index.js';

/** An upload's bytes, stored and checked against its header and trailer, not yet counted. */
interface StoredUpload {
  blob: BlobInfo;
  /** When its first data chunk was awaited and when its trailer arrived (ms since the epoch). */
  startedAt: number;
  endedAt: number;
  /** Multiparty: the site's signed contribution statement, checked, for the receipt. */
  contribution?: StoredContribution;
}

/**
 * Receives one site's update: header, data chunks, trailer. Every check that can refuse it runs before anything is
 * counted, so a bad, late, duplicate or truncated upload leaves the round exactly as it was. An accepted update is
 * recorded with its audit record in one transaction, and the site gets a receipt signed with the coordinator's key.
 */
@Injectable()
export class UploadReceiver {
  private readonly log = createLogger('uploads');

  private readonly slots: Semaphore;

  constructor(
    @Inject(COORDINATOR_CONFIG) config: Pick<CoordinatorConfig, 'maxConcurrentUploads'>,
    @Inject(DATABASE) private readonly db: Database,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(EncryptedAggregation) private readonly encrypted: EncryptedAggregation,
    @Inject(AuditLog) private readonly audit: AuditLog,
    @Inject(StudyLocks) private readonly locks: StudyLocks,
    @Inject(RoundsService) private readonly rounds: RoundsService,
    @Inject(PartialUploads) private readonly partials: PartialUploads,
    @Inject(CoordinatorMetrics) private readonly metrics: CoordinatorMetrics,
    @Inject(KeyEpochs) private readonly epochs: KeyEpochs,
  ) {
    this.slots = new Semaphore(config.maxConcurrentUploads);
  }

  async receive(siteId: string, messages: AsyncIterable<federation.UpdateChunk>): Promise<federation.UploadReceipt> {
    let concerns: { studyId: string; round: number } | undefined;
    let declared: { sha256: string; bytes: number } | undefined;
    try {
      return await this.receiveUpload(siteId, messages, (checked) => (concerns = checked), (header) => {
        if (SHA256_HEX.test(header.sha256)) declared = { sha256: header.sha256, bytes: header.totalBytes };
      });
    } catch (error) {
      // The refusal's log line names the study and round, once the header showed them to be real ones.
      if (error instanceof FederationError && concerns) error.concerns ??= concerns;
      if (error instanceof FederationError && declared && !error.received) error.declared ??= declared;
      throw error;
    }
  }

  private async receiveUpload(
    siteId: string,
    messages: AsyncIterable<federation.UpdateChunk>,
    checked: (concerns: { studyId: string; round: number }) => void,
    announced: (header: federation.UpdateHeader) => void,
  ): Promise<federation.UploadReceipt> {
    // Nothing is read from the stream until a slot is free: meanwhile gRPC's flow control holds the site's bytes
    // on its side (a stream window), where reading the header first would have let the stream buffer up to 16
    // messages (16 MiB) per waiting upload here. The slot is held while bytes arrive and are checked, not while the
    // update waits for its round's sum.
    const release = await this.slots.acquire();
    let header: federation.UpdateHeader;
    let target: UploadTarget;
    let stored: StoredUpload;
    try {
      const iterator = messages[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done || first.value.part?.$case !== 'header') {
        throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'an upload must start with an UpdateHeader message');
      }
      header = first.value.part.value;
      announced(header);
      target = await checkUploadHeader(this.db, this.encrypted, this.epochs, siteId, header);
      checked({ studyId: target.studyId, round: header.round });
      stored = await this.receiveData(siteId, header, target, iterator);
    } finally {
      release();
    }
    try {
      return await this.accept(siteId, header, target, stored);
    } catch (error) {
      if (error instanceof FederationError) return this.refuse(stored.blob, error);
      throw error;
    }
  }

  /** Refuses a stored upload: its bytes are removed again, and the refusal says what was received. */
  private async refuse(blob: BlobInfo, error: FederationError): Promise<never> {
    error.received = { sha256: blob.sha256, bytes: blob.size };
    await this.discard(blob.sha256);
    throw error;
  }

  /**
   * The data chunks go straight to a file, hashed on the way: memory holds a chunk, not the upload. An upload that
   * declared its SHA-256 is kept as a partial while it arrives, so a broken stream resumes from the bytes held
   * (QueryUpload); one that did not goes to a temporary file. A refused upload's bytes are removed again (unless
   * the same bytes are stored for a reason). A plaintext update's values are checked here too.
   */
  private async receiveData(
    siteId: string,
    header: federation.UpdateHeader,
    target: UploadTarget,
    iterator: AsyncIterator<federation.UpdateChunk>,
  ): Promise<StoredUpload> {
    const startedAt = Date.now();
    const metrics = this.metrics;
    const offset = header.offset;
    let received = offset;
    let trailer: federation.UpdateTrailer | undefined;
    async function* data(): AsyncGenerator<Uint8Array> {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        const part = next.value.part;
        if (trailer) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'the upload continued after its trailer');
        if (!part || part.$case === 'header') {
          throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'after the header an upload carries only data chunks and one trailer');
        }
        if (part.$case === 'trailer') {
          trailer = part.value;
          continue;
        }
        received += part.value.length;
        metrics.bytesReceived(part.value.length);
        if (received > header.totalBytes) {
          throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `the upload sent more than the ${header.totalBytes} bytes its header announced`);
        }
        yield part.value;
      }
    }
    const truncated = (): FederationError =>
      new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `the upload ended without its trailer after ${received} of ${header.totalBytes} bytes (truncated stream); it was not counted`,
      );
    const key = { siteId, studyId: target.studyId, round: header.round, sha256: header.sha256 };
    const blob = header.sha256 === '' ? await this.blobs.put(data()) : await this.receivePartial(key, header.offset, data, () => trailer !== undefined);
    // A resumable upload that stopped short: its bytes stay held for the resume.
    if (!blob) throw truncated();
    const refuse = (error: FederationError): Promise<never> => this.refuse(blob, error);
    if (!trailer) return refuse(truncated());
    const claimed: string = trailer.sha256;
    if (received !== header.totalBytes) {
      return refuse(new FederationError(GrpcStatus.INVALID_ARGUMENT, `the upload carried ${received} bytes but its header announced ${header.totalBytes}; nothing was stored`));
    }
    if (blob.sha256 !== claimed.toLowerCase() || (header.sha256 !== '' && blob.sha256 !== header.sha256)) {
      return refuse(
        new FederationError(
          GrpcStatus.DATA_LOSS,
          `the upload's bytes hash to ${blob.sha256} but the site's trailer says ${SHA256_HEX.test(claimed) ? claimed : `"${claimed.slice(0, 80)}"`}; nothing was stored`,
        ),
      );
    }
    const endedAt = Date.now();
    if (header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32) {
      try {
        validatePlaintextUpdate(await this.blobs.get(blob.sha256), target.layout, siteId);
      } catch (error) {
        if (error instanceof FederationError) return refuse(error);
        throw error;
      }
    }
    if (header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY) {
      try {
        if (target.keyEpoch === null) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${header.round} of study ${target.studyId} has no key epoch`);
        const contribution = await checkMultipartyUpdate(
          this.epochs.setup(),
          this.epochs.trust(),
          await this.blobs.get(blob.sha256),
          { siteId, studyId: target.studyId, round: header.round, epoch: target.keyEpoch, valueCount: target.vectorLength, sha256: blob.sha256 },
          header.contribution,
          this.encrypted.multipartyThreading(),
        );
        return { blob, startedAt, endedAt, contribution };
      } catch (error) {
        if (error instanceof FederationError) return refuse(error);
        throw error;
      }
    }
    return { blob, startedAt, endedAt };
  }

  /**
   * Appends the chunks to the update's partial and, once the trailer came, takes the whole file into the blob store
   * (null when the stream ended without it). A stream that breaks leaves the partial for the site to resume.
   */
  private async receivePartial(key: PartialKey, offset: number, data: () => AsyncGenerator<Uint8Array>, ended: () => boolean): Promise<BlobInfo | null> {
    let writer;
    try {
      writer = await this.partials.openAt(key, offset);
    } catch (error) {
      if (error instanceof PartialOffsetError) throw new FederationError(GrpcStatus.FAILED_PRECONDITION, error.message);
      throw error;
    }
    try {
      let first = true;
      for await (const chunk of data()) {
        await writer.write(chunk);
        if (first) await failpoint('upload.mid-stream');
        first = false;
      }
    } catch (error) {
      // The site's stream broke (or sent something refused): what arrived stays, for a resume from there.
      await writer.close();
      throw error;
    }
    if (!ended()) {
      await writer.close();
      return null;
    }
    return writer.complete();
  }

  /** Removes a refused upload's bytes, unless an accepted update or a model is these very bytes. */
  private async discard(sha256: string): Promise<void> {
    const [receipts, models] = await Promise.all([
      this.db.prisma.updateReceipt.count({ where: { sha256 } }),
      this.db.prisma.modelVersion.count({ where: { sha256 } }),
    ]);
    if (receipts + models === 0) await this.blobs.remove(sha256);
  }

  private async accept(
    siteId: string,
    header: federation.UpdateHeader,
    target: UploadTarget,
    stored: StoredUpload,
  ): Promise<federation.UploadReceipt> {
    const { blob } = stored;
    const digest = blob.sha256;
    // Summed as it arrives (single-key CKKS); multiparty updates are summed when the round closes.
    const encrypted = header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_CKKS;
    let addSeconds = 0;

    const accepted = await this.locks.run(target.studyId, async () => {
      // Re-check under the study's lock: the round may have closed while the bytes were arriving.
      const round = await this.db.prisma.round.findUnique({ where: { id: target.roundId }, include: { study: { select: { id: true, droppedSites: true } } } });
      if (round) refuseDropped(round.study, siteId);
      if (!round || round.status !== 'open') {
        throw new FederationError(
          GrpcStatus.FAILED_PRECONDITION,
          `round ${header.round} of study ${header.studyId} closed while the upload was in flight; it was not counted`,
        );
      }
      const existing = await this.db.prisma.updateReceipt.findUnique({ where: { roundId_siteId: { roundId: round.id, siteId } } });
      if (existing) {
        throw new FederationError(
          GrpcStatus.ALREADY_EXISTS,
          `site ${siteId} already uploaded for round ${header.round} of study ${header.studyId} (sha256 ${existing.sha256}); duplicates are never added`,
        );
      }
      // The same bytes from a second site are a replay (a ciphertext's seed makes honest uploads unique).
      const replayed = await this.db.prisma.updateReceipt.findFirst({ where: { roundId: round.id, sha256: blob.sha256 } });
      if (replayed) {
        throw new FederationError(
          GrpcStatus.ALREADY_EXISTS,
          `this exact update (sha256 ${blob.sha256}) was already uploaded for round ${header.round} of study ${header.studyId}; replays are never added`,
        );
      }
      // Every update of a round must come from the same global model; the first that names its base fixes it for the
      // round (stored with it, so a restarted coordinator holds later updates to it too). Before the sum, never after.
      const baseState = header.baseStateSha256;
      if (baseState !== '' && round.baseStateSha256 !== null && baseState !== round.baseStateSha256) {
        throw baseStateConflict(siteId, header.studyId, header.round, baseState, round.baseStateSha256);
      }
      // An encrypted update is checked completely and added to the round's running sum here, once. It is read only
      // now, into shared memory where the aggregation threads read it: one study holds one update in memory at a time.
      // Before it is added, its seeds are checked against every seed accepted under the key (any study, any round).
      let seeds: SeedDigests | undefined;
      if (encrypted) {
        const began = performance.now();
        seeds = await this.encrypted.addToRound(
          round.id,
          blob.sha256,
          blob.size,
          (buffer) => this.blobs.readInto(blob.sha256, buffer),
          target.vectorLength,
          (digests) => refuseReusedSeeds(this.db.prisma, digests),
        );
        addSeconds = (performance.now() - began) / 1000;
      }
      const receivedAt = new Date();
      const receiptId = randomUUID();
      const recorded = this.audit.transaction(async (tx) => {
        await tx.updateReceipt.create({
          data: {
            id: receiptId,
            roundId: round.id,
            siteId,
            sha256: blob.sha256,
            sizeBytes: blob.size,
            encoding: federation.updateEncodingToJSON(header.encoding),
            receivedAt,
            ...(stored.contribution ? { contribution: { ...stored.contribution } } : {}),
          },
        });
        if (seeds) await recordSeeds(tx, seeds, receiptId);
        if (baseState !== '' && round.baseStateSha256 === null) await tx.round.update({ where: { id: round.id }, data: { baseStateSha256: baseState } });
        return {
          result: undefined,
          audit: {
            kind: 'update.received',
            actor: `site:${siteId}`,
            siteId,
            studyId: target.studyId,
            round: header.round,
            details: {
              message: 'update',
              sha256: digest,
              bytes: blob.size,
              encoding: federation.updateEncodingToJSON(header.encoding),
              ...(baseState !== '' ? { baseStateSha256: baseState } : {}),
            },
          },
        };
      });
      const { records } = await recorded.catch((error: unknown) => {
        // In the sum but not recorded: the close must not use that sum.
        if (encrypted) this.encrypted.forgetRound(round.id);
        throw seedConflict(error) ?? error;
      });
      // The timings feed the scale benchmark: when the bytes arrived, and what adding them to the sum took.
      this.log.info(
        { siteId, studyId: target.studyId, round: header.round, bytes: blob.size, receiveStartedAt: stored.startedAt, receiveEndedAt: stored.endedAt, addSeconds },
        'update received',
      );
      return { receivedAt, auditSeq: records[0]!.seq };
    });
    await failpoint('upload.recorded');
    this.rounds.closeRoundSoon(target.studyId, target.roundId);
    const unsigned = {
      siteId,
      studyId: header.studyId,
      round: header.round,
      sha256: blob.sha256,
      receivedBytes: blob.size,
      receivedAtUnixMs: accepted.receivedAt.getTime(),
      auditSeq: accepted.auditSeq,
    };
    const signer = this.audit.signer;
    return {
      studyId: header.studyId,
      round: header.round,
      sha256: blob.sha256,
      receivedBytes: blob.size,
      receivedAtUnixMs: unsigned.receivedAtUnixMs,
      auditSeq: accepted.auditSeq,
      signature: signer ? signCanonical(receiptSignedBody(unsigned), signer.privateKeyPem) : '',
      certificatePem: signer?.certificatePem ?? '',
    };
  }

  /**
   * How much of an interrupted upload the coordinator holds, for the site to resume from. Asked of a round the site
   * could upload to (as its upload's header would be checked); the bytes of any other update are none of its business.
   */
  async progress(siteId: string, query: federation.UploadQuery): Promise<federation.UploadProgress> {
    if (!SHA256_HEX.test(query.sha256)) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `sha256: "${query.sha256.slice(0, 80)}" is not a SHA-256 digest (64 lower-case hex characters)`);
    }
    const { study } = await roundTakingUploads(this.db, siteId, query.studyId, query.round);
    const key = { siteId, studyId: study.id, round: query.round, sha256: query.sha256 };
    return { receivedBytes: await this.partials.held(key, Math.min(query.totalBytes, MAX_UPLOAD_BYTES)) };
  }
}
