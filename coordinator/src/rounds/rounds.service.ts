import { randomUUID, createHash } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import {
  applyAggregate,
  bytesToFloat32,
  createLogger,
  federation,
  float32ToBytes,
  initialWeights,
  modelSpecToMessage,
  parameterCount,
  preprocessingToJson,
  SHA256_HEX,
  studyDefinitionSchema,
  UpdateAccumulator,
  type StudyDefinition,
} from '@federa/shared';
import { BLOB_STORE, DATABASE } from '../app/tokens.js';
import type { BlobStore } from '../blobs/index.js';
import type { Database } from '../persistence/index.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { EncryptedAggregation } from './encrypted-aggregation.js';
import { evaluationBins, validateEvaluationReport } from './evaluation.js';
import { expectedPayloadBytes, validatePlaintextUpdate } from './upload-payload.js';

/** An update larger than this is refused before any byte is stored. */
const MAX_UPLOAD_BYTES = 2 * 1024 ** 3;

interface PublishedRound {
  kind: 'weights' | 'encrypted_aggregate';
  model: { sha256: string; size: number };
  sum: { sha256: string; size: number };
  sites: number;
}

/** How a stored model artifact travels on the wire. */
export function modelKindOf(kind: 'weights' | 'encrypted_aggregate'): federation.ModelKind {
  return kind === 'weights' ? federation.ModelKind.MODEL_KIND_WEIGHTS : federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE;
}

/** A stored model version as the reference tasks and downloads carry. */
export function modelRefOf(
  studyId: string,
  model: { round: number; kind: 'weights' | 'encrypted_aggregate'; sha256: string; sizeBytes: number; parameterCount: number },
): federation.ModelRef {
  return {
    studyId,
    round: model.round,
    kind: modelKindOf(model.kind),
    sha256: model.sha256,
    sizeBytes: model.sizeBytes,
    parameterCount: model.parameterCount,
  };
}

interface StudyRow {
  id: string;
  status: string;
  spec: unknown;
  specHash: string;
  totalRounds: number;
  currentRound: number;
}

interface OpenRound {
  id: string;
  studyId: string;
  number: number;
  status: string;
  deadlineAt: Date | null;
  assignedSites: string[];
}

/**
 * Runs every started study by itself: opens a round with the connected sites, hands each its task, takes
 * their uploads, aggregates with FedAvg when all assigned sites have reported (or at the deadline with at
 * least the study's minimum), publishes the next global model and opens the next round.
 *
 * All state lives in the database and the blob store, so a restarted coordinator picks up where it was.
 * Work on one study is serialised (see `withStudy`) so a late upload cannot race a round's closing.
 */
@Injectable()
export class RoundsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = createLogger('rounds');
  private readonly studyQueues = new Map<string, Promise<unknown>>();
  private readonly deadlineTimers = new Map<string, NodeJS.Timeout>();
  private shuttingDown = false;

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(EncryptedAggregation) private readonly encrypted: EncryptedAggregation,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.sessions.onConnected((siteId) => {
      void this.handleSiteConnected(siteId).catch((error: unknown) =>
        this.log.error({ err: error, siteId }, 'failed to hand tasks to a connecting site'),
      );
    });
    // Resume what a previous run left: re-arm deadlines of open rounds, open rounds that were due.
    const running = await this.db.prisma.study.findMany({ where: { status: 'running' } });
    for (const study of running) {
      const open = await this.findOpenRound(study.id);
      if (open) this.armDeadline(open);
      else await this.withStudy(study.id, () => this.openNextRound(study.id));
    }
  }

  onApplicationShutdown(): void {
    this.shuttingDown = true;
    for (const timer of this.deadlineTimers.values()) clearTimeout(timer);
    this.deadlineTimers.clear();
  }

  /** Creates the initial model (round 0) from the study's seed and opens round 1. */
  async startStudy(studyId: string): Promise<void> {
    await this.withStudy(studyId, async () => {
      const study = await this.db.prisma.study.findUnique({ where: { id: studyId } });
      if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} does not exist`);
      if (study.status !== 'draft') {
        throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `study ${studyId} is ${study.status}, not draft`);
      }
      const def = this.definitionOf(study);
      const weights = initialWeights(def.model);
      const blob = await this.blobs.put(float32ToBytes(weights));
      await this.db.prisma.$transaction([
        this.db.prisma.modelVersion.create({
          data: {
            id: randomUUID(),
            studyId,
            round: 0,
            sha256: blob.sha256,
            sizeBytes: blob.size,
            parameterCount: weights.length,
          },
        }),
        this.db.prisma.study.update({ where: { id: studyId }, data: { status: 'running', startedAt: new Date() } }),
      ]);
      this.log.info({ studyId, parameters: weights.length, model: blob.sha256 }, 'study started');
      await this.openNextRound(studyId);
    });
  }

  /**
   * The tasks a site still owes: evaluations of published models it has not answered (oldest first, so they come
   * before training on the next model), then open rounds it is assigned to and has not uploaded for.
   */
  async pendingTasksFor(siteId: string): Promise<federation.Task[]> {
    const evaluations = await this.db.prisma.roundEvaluation.findMany({
      where: { siteId, reportedAt: null },
      include: { round: true },
      orderBy: { requestedAt: 'asc' },
    });
    const rounds = await this.db.prisma.round.findMany({
      where: { status: 'open', assignedSites: { has: siteId }, receipts: { none: { siteId } }, failures: { none: { siteId } } },
      orderBy: { openedAt: 'asc' },
    });
    const tasks: federation.Task[] = [];
    for (const evaluation of evaluations) tasks.push(await this.evaluateTask(evaluation.round, evaluation.bins));
    for (const round of rounds) tasks.push(await this.trainTask(round));
    return tasks;
  }

  /**
   * Receives one upload: header, data chunks, trailer. Every check that can refuse it runs before anything
   * is counted, so a bad, late, duplicate or truncated upload leaves the round exactly as it was.
   */
  async receiveUpload(
    siteId: string,
    messages: AsyncIterable<federation.UpdateChunk>,
  ): Promise<federation.UploadReceipt> {
    const iterator = messages[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done || first.value.part?.$case !== 'header') {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'an upload must start with an UpdateHeader message');
    }
    const header = first.value.part.value;
    const target = await this.checkUploadHeader(siteId, header);

    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    let received = 0;
    let trailer: federation.UpdateTrailer | undefined;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const part = next.value.part;
      if (trailer) {
        throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'the upload continued after its trailer');
      }
      if (!part || part.$case === 'header') {
        throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'after the header an upload carries only data chunks and one trailer');
      }
      if (part.$case === 'trailer') {
        trailer = part.value;
        continue;
      }
      received += part.value.length;
      if (received > header.totalBytes) {
        throw new FederationError(
          GrpcStatus.INVALID_ARGUMENT,
          `the upload sent more than the ${header.totalBytes} bytes its header announced`,
        );
      }
      hash.update(part.value);
      chunks.push(part.value);
    }
    if (!trailer) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `the upload ended without its trailer after ${received} of ${header.totalBytes} bytes (truncated stream); nothing was stored`,
      );
    }
    if (received !== header.totalBytes) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `the upload carried ${received} bytes but its header announced ${header.totalBytes}; nothing was stored`,
      );
    }
    const digest = hash.digest('hex');
    if (digest !== trailer.sha256.toLowerCase()) {
      throw new FederationError(
        GrpcStatus.DATA_LOSS,
        `the upload's bytes hash to ${digest} but the site's trailer says ${trailer.sha256}; nothing was stored`,
      );
    }
    const payload = Buffer.concat(chunks, received);
    if (header.encoding === federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32) {
      validatePlaintextUpdate(payload, target.vectorLength);
    } else {
      await this.encrypted.validateUpdate(payload, target.vectorLength);
    }
    const blob = await this.blobs.put(payload);

    const receipt = await this.withStudy(target.studyId, async () => {
      // Re-check under the study's lock: the round may have closed while the bytes were arriving.
      const round = await this.db.prisma.round.findUnique({ where: { id: target.roundId } });
      if (!round || round.status !== 'open') {
        throw new FederationError(
          GrpcStatus.FAILED_PRECONDITION,
          `round ${header.round} of study ${header.studyId} closed while the upload was in flight; it was not counted`,
        );
      }
      const existing = await this.db.prisma.updateReceipt.findUnique({
        where: { roundId_siteId: { roundId: round.id, siteId } },
      });
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
      const row = await this.db.prisma.updateReceipt.create({
        data: {
          id: randomUUID(),
          roundId: round.id,
          siteId,
          sha256: blob.sha256,
          sizeBytes: blob.size,
          encoding: federation.updateEncodingToJSON(header.encoding),
        },
      });
      this.log.info({ siteId, studyId: target.studyId, round: header.round, bytes: blob.size }, 'update received');
      return row;
    });
    void this.withStudy(target.studyId, () => this.closeRoundIfComplete(target.roundId)).catch((error: unknown) =>
      this.log.error({ err: error, roundId: target.roundId }, 'closing the round failed'),
    );
    return {
      studyId: header.studyId,
      round: header.round,
      sha256: receipt.sha256,
      receivedBytes: receipt.sizeBytes,
      receivedAtUnixMs: receipt.receivedAt.getTime(),
    };
  }

  async recordMetrics(siteId: string, report: federation.MetricsReport): Promise<void> {
    const kind =
      report.kind === federation.MetricKind.METRIC_KIND_TRAIN
        ? 'train'
        : report.kind === federation.MetricKind.METRIC_KIND_VALIDATION
          ? 'validation'
          : undefined;
    if (!kind) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'metrics report needs kind TRAIN or VALIDATION');
    for (const [name, value] of [
      ['loss', report.loss],
      ['accuracy', report.accuracy],
    ] as const) {
      if (!Number.isFinite(value)) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `metrics ${name} is not a finite number`);
    }
    if (report.accuracy < 0 || report.accuracy > 1) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `metrics accuracy must be within [0, 1], got ${report.accuracy}`);
    }
    const round = await this.participantRound(siteId, report.studyId, report.round);
    const data = { loss: report.loss, accuracy: report.accuracy, samples: report.samples ?? null, reportedAt: new Date() };
    await this.db.prisma.roundMetric.upsert({
      where: { roundId_siteId_kind: { roundId: round.id, siteId, kind } },
      create: { id: randomUUID(), roundId: round.id, siteId, kind, ...data },
      update: data,
    });
  }

  /**
   * A site that cannot contribute (diverged, no usable data, a task it cannot run) says so; the round stops waiting for it and closes
   * as soon as the other assigned sites have reported. Nothing it sent is counted.
   */
  async recordFailure(siteId: string, failure: federation.RoundFailure): Promise<void> {
    const reason =
      failure.reason === federation.FailureReason.FAILURE_REASON_DIVERGED
        ? 'diverged'
        : failure.reason === federation.FailureReason.FAILURE_REASON_NO_USABLE_DATA
          ? 'no-usable-data'
          : failure.reason === federation.FailureReason.FAILURE_REASON_UNSUPPORTED_TASK
            ? 'unsupported-task'
            : undefined;
    if (!reason) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'round failure needs reason DIVERGED, NO_USABLE_DATA or UNSUPPORTED_TASK');
    const message = failure.message.trim().slice(0, 1000);
    const round = await this.participantRound(siteId, failure.studyId, failure.round);
    const uploaded = await this.db.prisma.updateReceipt.count({ where: { roundId: round.id, siteId } });
    if (round.status !== 'open') {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${failure.round} of study ${failure.studyId} is ${round.status}`);
    }
    if (uploaded > 0) {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} already uploaded for round ${failure.round}; its update stands`);
    }
    await this.db.prisma.roundFailure.upsert({
      where: { roundId_siteId: { roundId: round.id, siteId } },
      create: { id: randomUUID(), roundId: round.id, siteId, reason, message },
      update: { reason, message },
    });
    this.log.warn({ siteId, studyId: failure.studyId, round: failure.round, reason, message }, 'site cannot contribute to the round');
    void this.withStudy(round.studyId, () => this.closeRoundIfComplete(round.id)).catch((error: unknown) =>
      this.log.error({ err: error, roundId: round.id }, 'closing the round failed'),
    );
  }

  /**
   * A site's evaluation of a round's published model: counts only, checked against the study (its classes, the
   * bins asked for, consistent shapes) and accepted once per site and round. Refusals name the offending field.
   */
  async recordEvaluation(siteId: string, report: federation.EvaluationReport): Promise<void> {
    const study = await this.db.prisma.study.findUnique({ where: { id: report.studyId } });
    if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${report.studyId} does not exist`);
    const round = await this.participantRound(siteId, report.studyId, report.round);
    const request = await this.db.prisma.roundEvaluation.findUnique({ where: { roundId_siteId: { roundId: round.id, siteId } } });
    if (!request) {
      throw new FederationError(
        GrpcStatus.FAILED_PRECONDITION,
        `site ${siteId} was not asked to evaluate round ${report.round} of study ${report.studyId}: a round's model is evaluated once published, by the sites it was made from`,
      );
    }
    const duplicate = new FederationError(
      GrpcStatus.ALREADY_EXISTS,
      `site ${siteId} already reported its evaluation of round ${report.round} of study ${report.studyId}; the first report stands`,
    );
    if (request.reportedAt) throw duplicate;
    const counts = validateEvaluationReport(report, { classNames: this.definitionOf(study).classNames, bins: request.bins });
    // Conditional on still being unanswered, so two racing reports cannot both be recorded.
    const recorded = await this.db.prisma.roundEvaluation.updateMany({
      where: { id: request.id, reportedAt: null },
      data: { reportedAt: new Date(), counts: { ...counts }, backend: report.backend, seconds: report.seconds },
    });
    if (recorded.count === 0) throw duplicate;
    this.log.info({ siteId, studyId: study.id, round: report.round, seconds: report.seconds }, 'evaluation received');
  }

  /** The round, if the calling site was assigned to it; metrics and failures come only from participants. */
  private async participantRound(siteId: string, studyId: string, number: number): Promise<OpenRound> {
    const round = await this.db.prisma.round.findUnique({ where: { studyId_number: { studyId, number } } });
    if (!round || !round.assignedSites.includes(siteId)) {
      throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a participant of round ${number} of study ${studyId}`);
    }
    return round;
  }

  private async handleSiteConnected(siteId: string): Promise<void> {
    for (const task of await this.pendingTasksFor(siteId)) this.sessions.send(siteId, task);
    // A study may have been waiting for enough sites to open its next round.
    const waiting = await this.db.prisma.study.findMany({ where: { status: 'running' } });
    for (const study of waiting) {
      await this.withStudy(study.id, async () => {
        if (!(await this.findOpenRound(study.id))) await this.openNextRound(study.id);
      });
    }
  }

  private async checkUploadHeader(
    siteId: string,
    header: federation.UpdateHeader,
  ): Promise<{ studyId: string; roundId: string; vectorLength: number }> {
    const study = await this.db.prisma.study.findUnique({ where: { id: header.studyId } });
    if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${header.studyId} does not exist`);
    if (study.status !== 'running') {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `study ${header.studyId} is ${study.status}; it takes no uploads`);
    }
    const def = this.definitionOf(study);
    const round = await this.db.prisma.round.findUnique({
      where: { studyId_number: { studyId: study.id, number: header.round } },
    });
    if (!round) {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${header.round} of study ${study.id} has not been opened`);
    }
    if (round.status !== 'open') {
      throw new FederationError(
        GrpcStatus.FAILED_PRECONDITION,
        `round ${header.round} of study ${study.id} is ${round.status}; late uploads are refused, not added`,
      );
    }
    if (!round.assignedSites.includes(siteId)) {
      throw new FederationError(
        GrpcStatus.PERMISSION_DENIED,
        `site ${siteId} is not a participant of round ${header.round} of study ${study.id}`,
      );
    }
    if (round.deadlineAt && round.deadlineAt.getTime() < Date.now()) {
      throw new FederationError(GrpcStatus.DEADLINE_EXCEEDED, `round ${header.round} of study ${study.id} passed its deadline`);
    }
    const expectedEncoding = this.encodingOf(def);
    if (header.encoding !== expectedEncoding) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `study ${study.id} takes ${federation.updateEncodingToJSON(expectedEncoding)} updates, not ${federation.updateEncodingToJSON(header.encoding)}`,
      );
    }
    const vectorLength = parameterCount(def.model) + 1;
    if (header.vectorLength !== vectorLength) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `update vector length ${header.vectorLength} does not match the study's model (${vectorLength} = parameters + weight)`,
      );
    }
    const expectedBytes = expectedPayloadBytes(header.encoding, vectorLength);
    if (expectedBytes !== undefined && header.totalBytes !== expectedBytes) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `a ${federation.updateEncodingToJSON(header.encoding)} update of ${vectorLength} values is ${expectedBytes} bytes, the header says ${header.totalBytes}`,
      );
    }
    if (header.totalBytes <= 0 || header.totalBytes > MAX_UPLOAD_BYTES) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `upload size ${header.totalBytes} is outside 1..${MAX_UPLOAD_BYTES} bytes`);
    }
    const base = await this.db.prisma.modelVersion.findUnique({
      where: { studyId_round: { studyId: study.id, round: header.round - 1 } },
    });
    if (!SHA256_HEX.test(header.baseModelSha256) || header.baseModelSha256 !== base?.sha256) {
      throw new FederationError(
        GrpcStatus.FAILED_PRECONDITION,
        `the update was computed against model ${header.baseModelSha256 || '(none)'}, but round ${header.round} starts from ${base?.sha256 ?? '(missing)'}`,
      );
    }
    return { studyId: study.id, roundId: round.id, vectorLength };
  }

  /** Opens the study's next round if it is running, has none open, and enough sites are connected. */
  private async openNextRound(studyId: string): Promise<void> {
    if (this.shuttingDown) return;
    const study = await this.db.prisma.study.findUnique({ where: { id: studyId } });
    if (!study || study.status !== 'running') return;
    const def = this.definitionOf(study);
    const last = await this.db.prisma.round.findFirst({ where: { studyId }, orderBy: { number: 'desc' } });
    const number = (last?.number ?? 0) + 1;
    if (number > study.totalRounds) return;
    const eligible = this.sessions.connectedSiteIds().filter((id) => !def.sites || def.sites.includes(id));
    if (eligible.length < def.minSites) {
      this.log.info(
        { studyId, round: number, connected: eligible.length, minSites: def.minSites },
        'waiting for enough sites to connect before opening the round',
      );
      return;
    }
    const openedAt = new Date();
    const round = await this.db.prisma.round.create({
      data: {
        id: randomUUID(),
        studyId,
        number,
        status: 'open',
        openedAt,
        deadlineAt: new Date(openedAt.getTime() + def.roundTimeoutSeconds * 1000),
        assignedSites: eligible,
      },
    });
    await this.db.prisma.study.update({ where: { id: studyId }, data: { currentRound: number } });
    this.log.info({ studyId, round: number, sites: eligible }, 'round opened');
    this.armDeadline(round);
    const task = await this.trainTask(round);
    for (const siteId of eligible) this.sessions.send(siteId, task);
  }

  private async closeRoundIfComplete(roundId: string): Promise<void> {
    const round = await this.db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true, failures: true } });
    if (!round || round.status !== 'open') return;
    if (round.receipts.length + round.failures.length < round.assignedSites.length) return;
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = this.definitionOf(study);
    if (round.receipts.length >= def.minSites) {
      await this.aggregateRound(round.id);
      return;
    }
    const why = round.failures.map((f) => `${f.siteId}: ${f.reason} (${f.message})`).join('; ');
    await this.failRound(
      round,
      study.id,
      `round ${round.number} has ${round.receipts.length} of the ${def.minSites} updates it needs; sites that could not contribute: ${why}`,
    );
  }

  private async failRound(round: OpenRound, studyId: string, message: string): Promise<void> {
    await this.db.prisma.$transaction([
      this.db.prisma.round.update({ where: { id: round.id }, data: { status: 'failed', closedAt: new Date() } }),
      this.db.prisma.study.update({ where: { id: studyId }, data: { status: 'failed', finishedAt: new Date(), error: message } }),
    ]);
    this.clearDeadline(round.id);
    this.log.error({ studyId, round: round.number }, message);
    this.broadcastClosed(round.assignedSites, studyId, federation.StudyOutcome.STUDY_OUTCOME_FAILED, message, round.number - 1);
  }

  private async onDeadline(roundId: string): Promise<void> {
    const round = await this.db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true } });
    if (!round || round.status !== 'open') return;
    const study = await this.db.prisma.study.findUnique({ where: { id: round.studyId } });
    if (!study) return;
    const def = this.definitionOf(study);
    if (round.receipts.length >= def.minSites) {
      this.log.warn(
        { studyId: study.id, round: round.number, reported: round.receipts.length, assigned: round.assignedSites.length },
        'round deadline passed; closing with the sites that reported',
      );
      await this.aggregateRound(round.id);
      return;
    }
    await this.failRound(
      round,
      study.id,
      `round ${round.number} passed its deadline with ${round.receipts.length} of the ${def.minSites} updates it needs`,
    );
  }

  /**
   * FedAvg over the round's stored updates, one at a time so memory does not grow with the number of sites.
   * The sum and the new global model are written as blobs before the round is marked closed: a crash in
   * between re-runs this from the same inputs and gets the same content-addressed outputs.
   */
  private async aggregateRound(roundId: string): Promise<void> {
    const round = await this.db.prisma.round.update({
      where: { id: roundId },
      data: { status: 'aggregating' },
      include: { receipts: { orderBy: { receivedAt: 'asc' } } },
    });
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = this.definitionOf(study);
    const baseRow = await this.db.prisma.modelVersion.findUniqueOrThrow({
      where: { studyId_round: { studyId: study.id, round: round.number - 1 } },
    });
    const published = def.aggregation === 'ckks' ? await this.sumEncrypted(round.receipts) : await this.averagePlain(baseRow.sha256, round.receipts);
    const finished = round.number >= study.totalRounds;
    const now = new Date();
    const bins = evaluationBins(def.model.classes);
    await this.db.prisma.$transaction([
      // Recorded with the model it concerns, so a restart between publishing and asking still asks (on reconnection).
      this.db.prisma.roundEvaluation.createMany({
        data: round.receipts.map((r) => ({ id: randomUUID(), roundId: round.id, siteId: r.siteId, bins })),
      }),
      this.db.prisma.modelVersion.create({
        data: {
          id: randomUUID(),
          studyId: study.id,
          round: round.number,
          kind: published.kind,
          sha256: published.model.sha256,
          sizeBytes: published.model.size,
          parameterCount: baseRow.parameterCount,
        },
      }),
      this.db.prisma.round.update({
        where: { id: round.id },
        data: { status: 'closed', closedAt: now, participants: published.sites, aggregateSha256: published.sum.sha256 },
      }),
      this.db.prisma.study.update({
        where: { id: study.id },
        data: finished ? { status: 'completed', finishedAt: now } : {},
      }),
    ]);
    this.clearDeadline(round.id);
    this.log.info(
      { studyId: study.id, round: round.number, participants: published.sites, model: published.model.sha256, kind: published.kind },
      'round aggregated; new global model published',
    );
    // Sent before the next train task or StudyClosed: a site scores each model before it moves past it.
    await this.askForEvaluation(round, bins, round.receipts.map((r) => r.siteId));
    if (finished) {
      this.broadcastClosed(
        round.assignedSites,
        study.id,
        federation.StudyOutcome.STUDY_OUTCOME_COMPLETED,
        `study ${def.name} completed ${study.totalRounds} rounds`,
        round.number,
      );
    } else {
      await this.openNextRound(study.id);
    }
  }

  /** Evaluation is reported, never a gate: failing to send it is logged and left to the replay on reconnection. */
  private async askForEvaluation(round: { studyId: string; number: number }, bins: number, siteIds: string[]): Promise<void> {
    try {
      const task = await this.evaluateTask(round, bins);
      for (const siteId of siteIds) this.sessions.send(siteId, task);
    } catch (error) {
      this.log.error({ err: error, studyId: round.studyId, round: round.number }, 'could not send the evaluation tasks');
    }
  }

  /** FedAvg in the clear: the coordinator computes and publishes the next global weights itself. */
  private async averagePlain(baseSha256: string, receipts: Array<{ sha256: string }>): Promise<PublishedRound> {
    const base = bytesToFloat32(await this.blobs.get(baseSha256), `model ${baseSha256}`);
    const accumulator = new UpdateAccumulator(base.length + 1);
    for (const receipt of receipts) {
      accumulator.add(bytesToFloat32(await this.blobs.get(receipt.sha256), `update ${receipt.sha256}`));
    }
    const sum = await this.blobs.put(new Uint8Array(accumulator.sum.buffer));
    const model = await this.blobs.put(float32ToBytes(applyAggregate(base, accumulator.sum)));
    return { kind: 'weights', model, sum, sites: accumulator.count };
  }

  /** The encrypted sum is what gets published: only sites can turn it into the next global weights. */
  private async sumEncrypted(receipts: Array<{ sha256: string }>): Promise<PublishedRound> {
    const blobs = this.blobs;
    const { bytes, sites } = await this.encrypted.sum(
      (async function* () {
        for (const receipt of receipts) yield await blobs.get(receipt.sha256);
      })(),
    );
    const blob = await this.blobs.put(bytes);
    return { kind: 'encrypted_aggregate', model: blob, sum: blob, sites };
  }

  private broadcastClosed(
    siteIds: string[],
    studyId: string,
    outcome: federation.StudyOutcome,
    message: string,
    finalRound: number,
  ): void {
    for (const siteId of siteIds) {
      this.sessions.send(siteId, {
        taskId: `${studyId}/closed`,
        kind: { $case: 'studyClosed', value: { studyId, outcome, message, finalRound } },
      });
    }
  }

  private async trainTask(round: OpenRound): Promise<federation.Task> {
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = this.definitionOf(study);
    const base = await this.db.prisma.modelVersion.findUniqueOrThrow({
      where: { studyId_round: { studyId: study.id, round: round.number - 1 } },
    });
    return {
      taskId: `${study.id}/${round.number}/train`,
      kind: {
        $case: 'train',
        value: {
          studyId: study.id,
          round: round.number,
          studyHash: study.specHash,
          model: modelSpecToMessage(def.model),
          classNames: def.classNames,
          training: {
            // The study definition guarantees exactly one of the two; 0 on the wire means "not this one".
            localEpochs: def.localEpochs ?? 0,
            localSteps: def.localSteps ?? 0,
            batchSize: def.batchSize,
            learningRate: def.learningRate,
            optimizer: def.optimizer === 'adam' ? federation.Optimizer.OPTIMIZER_ADAM : federation.Optimizer.OPTIMIZER_SGD,
            ...(def.augmentation ? { augmentation: def.augmentation } : {}),
            ...(def.classWeights
              ? {
                  classWeighting:
                    def.classWeights === 'balanced' ? { balanced: true, weights: [] } : { balanced: false, weights: def.classWeights },
                }
              : {}),
            proximalMu: def.fedProxMu,
          },
          baseModel: modelRefOf(study.id, base),
          encoding: this.encodingOf(def),
          deadlineUnixMs: round.deadlineAt?.getTime() ?? 0,
          preprocessingJson: preprocessingToJson(def.preprocessing),
        },
      },
    };
  }

  private async evaluateTask(round: { studyId: string; number: number }, bins: number): Promise<federation.Task> {
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = this.definitionOf(study);
    const model = await this.db.prisma.modelVersion.findUniqueOrThrow({
      where: { studyId_round: { studyId: study.id, round: round.number } },
    });
    return {
      taskId: `${study.id}/${round.number}/evaluate`,
      kind: {
        $case: 'evaluate',
        value: {
          studyId: study.id,
          round: round.number,
          studyHash: study.specHash,
          model: modelSpecToMessage(def.model),
          classNames: def.classNames,
          globalModel: modelRefOf(study.id, model),
          preprocessingJson: preprocessingToJson(def.preprocessing),
          bins,
        },
      },
    };
  }

  private encodingOf(def: StudyDefinition): federation.UpdateEncoding {
    switch (def.aggregation) {
      case 'plaintext':
        return federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32;
      case 'ckks':
        return federation.UpdateEncoding.UPDATE_ENCODING_CKKS;
    }
  }

  private definitionOf(study: StudyRow): StudyDefinition {
    // Stored definitions were validated on the way in; parsing again guards against hand-edited rows.
    return studyDefinitionSchema.parse(study.spec);
  }

  private async findOpenRound(studyId: string): Promise<OpenRound | null> {
    return this.db.prisma.round.findFirst({ where: { studyId, status: { in: ['open', 'aggregating'] } } });
  }

  private armDeadline(round: OpenRound): void {
    if (round.status === 'aggregating') {
      // A crash during aggregation: finish it now, from the stored updates.
      void this.withStudy(round.studyId, () => this.aggregateRound(round.id));
      return;
    }
    if (!round.deadlineAt) return;
    this.clearDeadline(round.id);
    const delay = Math.max(0, round.deadlineAt.getTime() - Date.now());
    const timer = setTimeout(() => {
      this.deadlineTimers.delete(round.id);
      void this.withStudy(round.studyId, () => this.onDeadline(round.id)).catch((error: unknown) =>
        this.log.error({ err: error, roundId: round.id }, 'handling the round deadline failed'),
      );
    }, Math.min(delay, 2_147_000_000));
    timer.unref();
    this.deadlineTimers.set(round.id, timer);
  }

  private clearDeadline(roundId: string): void {
    const timer = this.deadlineTimers.get(roundId);
    if (timer) clearTimeout(timer);
    this.deadlineTimers.delete(roundId);
  }

  /** Runs `work` after every earlier piece of work on the same study has finished. */
  private withStudy<T>(studyId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.studyQueues.get(studyId) ?? Promise.resolve();
    const result = previous.catch(() => undefined).then(work);
    const settled = result.catch(() => undefined);
    this.studyQueues.set(studyId, settled);
    void settled.then(() => {
      if (this.studyQueues.get(studyId) === settled) this.studyQueues.delete(studyId);
    });
    return result;
  }
}
