import { randomUUID } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { createLogger, federation, float32ToBytes, initialWeights } from '@federa/shared';
import { BLOB_STORE, COORDINATOR_CONFIG, DATABASE } from '../app/tokens.js';
import type { CoordinatorConfig } from '../config/index.js';
import { AuditLog } from '../audit/audit-log.js';
import { PartialUploads, type BlobStore } from '../blobs/index.js';
import type { Database } from '../persistence/index.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { Aggregator } from './aggregator.js';
import { evaluationBins } from './evaluation.js';
import { StudyLocks } from './study-locks.js';
import {
  definitionOf,
  evaluateTask,
  modelRefOf,
  studyClosedTask,
  trainTask,
  type AggregateMembers,
  type ModelRow,
} from './tasks.js';

interface OpenRound {
  id: string;
  studyId: string;
  number: number;
  status: string;
  deadlineAt: Date | null;
  assignedSites: string[];
}

/**
 * Runs every started study by itself: opens a round with the connected sites, hands each its task, aggregates with
 * FedAvg when all assigned sites have answered (or at the deadline with at least the study's minimum), publishes the
 * next global model and opens the next round. Uploads arrive through UploadReceiver, other reports through
 * SiteReports; both ask this service to close a round once they have recorded an answer.
 *
 * All state lives in the database and the blob store, so a restarted coordinator picks up where it was. Work on one
 * study is serialised (StudyLocks) so a late upload cannot race a round's closing. Every step is an audit record.
 */
@Injectable()
export class RoundsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly log = createLogger('rounds');
  private readonly deadlineTimers = new Map<string, NodeJS.Timeout>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout[]>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly backgroundTimers = new Set<NodeJS.Timeout>();
  private shuttingDown = false;

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(BLOB_STORE) private readonly blobs: BlobStore,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(Aggregator) private readonly aggregator: Aggregator,
    @Inject(AuditLog) private readonly audit: AuditLog,
    @Inject(StudyLocks) private readonly locks: StudyLocks,
    @Inject(COORDINATOR_CONFIG) private readonly config: Pick<CoordinatorConfig, 'reconnectGraceSeconds'>,
    @Inject(PartialUploads) private readonly partials: PartialUploads,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.sessions.onConnected((siteId) => {
      this.graceTimers.get(siteId)?.forEach((timer) => clearTimeout(timer));
      this.graceTimers.delete(siteId);
      this.retried(`site ${siteId} connected`, null, () => this.handleSiteConnected(siteId));
    });
    this.sessions.onDisconnected((siteId) => {
      this.retried(`site ${siteId} left`, null, () => this.waitForReturn(siteId));
    });
    // Resume what a previous run left: re-arm deadlines of open rounds (closing one whose sites all answered just
    // before a crash), open rounds that were due.
    const running = await this.db.prisma.study.findMany({ where: { status: 'running' } });
    await this.sweepPartials();
    for (const study of running) {
      const open = await this.findOpenRound(study.id);
      if (open) {
        this.armDeadline(open);
        if (open.status === 'open') this.closeRoundSoon(study.id, open.id);
      } else await this.locks.run(study.id, () => this.openNextRound(study.id));
    }
  }

  /** Partial uploads of rounds that ended while the coordinator was down are dropped at start-up. */
  private async sweepPartials(): Promise<void> {
    for (const held of await this.partials.rounds()) {
      const round = await this.db.prisma.round.findUnique({ where: { studyId_number: { studyId: held.studyId, number: held.round } } });
      if (round?.status !== 'open') await this.partials.removeRound(held.studyId, held.round);
    }
  }

  /**
   * A site left while assigned to open rounds it has not answered: if it is not back within reconnectGraceSeconds,
   * the rounds stop waiting for it (it is listed among their failures as disconnected) instead of waiting for the
   * deadline.
   */
  private async waitForReturn(siteId: string): Promise<void> {
    if (this.shuttingDown) return;
    const rounds = await this.db.prisma.round.findMany({
      where: { status: 'open', assignedSites: { has: siteId }, receipts: { none: { siteId } }, failures: { none: { siteId } } },
    });
    if (rounds.length === 0) return;
    const timers = rounds.map((round) => {
      const timer = setTimeout(() => {
        this.retried(`site ${siteId} did not come back`, round.studyId, () => this.markDisconnected(round.id, siteId));
      }, this.config.reconnectGraceSeconds * 1000);
      timer.unref();
      return timer;
    });
    this.graceTimers.set(siteId, [...(this.graceTimers.get(siteId) ?? []), ...timers]);
  }

  private async markDisconnected(roundId: string, siteId: string): Promise<void> {
    if (this.sessions.isConnected(siteId)) return;
    const round = await this.db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true, failures: true } });
    if (!round || round.status !== 'open' || round.receipts.some((r) => r.siteId === siteId) || round.failures.some((f) => f.siteId === siteId)) return;
    const message = `site ${siteId} lost its connection during the round and did not come back within ${this.config.reconnectGraceSeconds} s`;
    await this.audit.transaction(async (tx) => {
      await tx.roundFailure.create({ data: { id: randomUUID(), roundId, siteId, reason: 'disconnected', message } });
      return { result: undefined, audit: { kind: 'round.site-lost', actor: 'system', studyId: round.studyId, round: round.number, siteId, details: { reason: message } } };
    });
    this.log.warn({ siteId, studyId: round.studyId, round: round.number }, message);
    await this.closeRoundIfComplete(roundId);
  }

  onApplicationShutdown(): void {
    this.shuttingDown = true;
    for (const timer of this.deadlineTimers.values()) clearTimeout(timer);
    this.deadlineTimers.clear();
    for (const timers of this.graceTimers.values()) timers.forEach((timer) => clearTimeout(timer));
    this.graceTimers.clear();
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    for (const timer of this.backgroundTimers) clearTimeout(timer);
    this.backgroundTimers.clear();
  }

  /** Creates the initial model (round 0) from the study's seed and opens round 1. */
  async startStudy(studyId: string, actor: string): Promise<void> {
    await this.locks.run(studyId, async () => {
      const study = await this.db.prisma.study.findUnique({ where: { id: studyId } });
      if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} does not exist`);
      if (study.status !== 'draft') {
        throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `study ${studyId} is ${study.status}, not draft`);
      }
      const def = definitionOf(study);
      const weights = initialWeights(def.model);
      const blob = await this.blobs.put(float32ToBytes(weights));
      await this.audit.transaction(async (tx) => {
        await tx.modelVersion.create({
          data: { id: randomUUID(), studyId, round: 0, sha256: blob.sha256, sizeBytes: blob.size, parameterCount: weights.length },
        });
        await tx.study.update({ where: { id: studyId }, data: { status: 'running', startedAt: new Date() } });
        return {
          result: undefined,
          audit: { kind: 'study.started', actor, studyId, details: { specHash: study.specHash, initialModel: blob.sha256 } },
        };
      });
      this.log.info({ studyId, parameters: weights.length, model: blob.sha256 }, 'study started');
      await this.openNextRound(studyId);
    });
  }

  /** Ends a draft or running study: an open round is abandoned (nothing of it is aggregated) and sites are told. */
  async stopStudy(studyId: string, actor: string, reason: string): Promise<void> {
    await this.locks.run(studyId, async () => {
      const study = await this.db.prisma.study.findUnique({ where: { id: studyId } });
      if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} does not exist`);
      if (study.status !== 'draft' && study.status !== 'running') {
        throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `study ${studyId} is ${study.status}; only a draft or running study can be stopped`);
      }
      const open = await this.findOpenRound(studyId);
      const message = `study stopped by ${actor}: ${reason}`;
      const now = new Date();
      await this.audit.transaction(async (tx) => {
        if (open) await tx.round.update({ where: { id: open.id }, data: { status: 'failed', closedAt: now } });
        await tx.study.update({ where: { id: studyId }, data: { status: 'cancelled', finishedAt: now, error: message } });
        return {
          result: undefined,
          audit: [
            ...(open ? [{ kind: 'round.failed', actor, studyId, round: open.number, details: { reason: message } }] : []),
            { kind: 'study.stopped', actor, studyId, details: { reason, round: open?.number ?? study.currentRound } },
          ],
        };
      });
      if (open) this.roundEnded(open);
      const last = await this.db.prisma.modelVersion.findFirst({ where: { studyId }, orderBy: { round: 'desc' } });
      const sites = open?.assignedSites ?? (await this.db.prisma.round.findFirst({ where: { studyId }, orderBy: { number: 'desc' } }))?.assignedSites ?? [];
      this.broadcastClosed(sites, studyId, federation.StudyOutcome.STUDY_OUTCOME_CANCELLED, message, last?.round ?? 0);
      this.log.warn({ studyId, actor, reason }, 'study stopped');
    });
  }

  /**
   * The tasks a site still owes: evaluations of published models it has neither answered nor refused (oldest first,
   * so they come before training on the next model), then open rounds it is assigned to and has not answered.
   */
  async pendingTasksFor(siteId: string): Promise<federation.Task[]> {
    const evaluations = await this.db.prisma.roundEvaluation.findMany({
      where: { siteId, reportedAt: null, refusedReason: null, round: { study: { status: { in: ['running', 'completed'] } } } },
      include: { round: { include: { study: true } } },
      orderBy: { requestedAt: 'asc' },
    });
    const rounds = await this.db.prisma.round.findMany({
      where: { status: 'open', assignedSites: { has: siteId }, receipts: { none: { siteId } }, failures: { none: { siteId } } },
      include: { study: true },
      orderBy: { openedAt: 'asc' },
    });
    const tasks: federation.Task[] = [];
    for (const evaluation of evaluations) {
      const { round } = evaluation;
      tasks.push(evaluateTask(round.study, round.number, await this.modelRef(round.studyId, round.number), evaluation.bins));
    }
    for (const round of rounds) tasks.push(trainTask(round.study, round, await this.modelRef(round.studyId, round.number - 1)));
    return tasks;
  }

  /**
   * How a published model travels: with the round's cohort and the sites summed, which every site checks against its
   * policy (and, for an encrypted aggregate, against the tags and contribution slots it decrypts).
   */
  async modelRef(studyId: string, round: number): Promise<federation.ModelRef> {
    const model = await this.db.prisma.modelVersion.findUniqueOrThrow({ where: { studyId_round: { studyId, round } } });
    return modelRefOf(studyId, model, await this.membersOf(studyId, model));
  }

  async membersOf(studyId: string, model: ModelRow): Promise<AggregateMembers | null> {
    if (model.round === 0) return null;
    const round = await this.db.prisma.round.findUniqueOrThrow({
      where: { studyId_number: { studyId, number: model.round } },
      include: { receipts: { select: { siteId: true } } },
    });
    return { cohort: [...round.assignedSites].sort(), contributors: round.receipts.map((r) => r.siteId).sort() };
  }

  /** Asks for the round to be closed once every assigned site has answered. */
  closeRoundSoon(studyId: string, roundId: string): void {
    this.retried(`closing round ${roundId}`, studyId, () => this.closeRoundIfComplete(roundId));
  }

  /**
   * Runs background work (under the study's lock when it has one) and, while it fails, runs it again with backoff
   * (1 s doubling to a minute) until it succeeds or the coordinator stops: a database that is briefly away must not
   * leave a round waiting for its deadline, or a site without its tasks. Each step re-reads what it needs, so
   * running it again is safe.
   */
  private retried(what: string, studyId: string | null, step: () => Promise<void>, attempt = 0): void {
    if (this.shuttingDown) return;
    const run = studyId ? () => this.locks.run(studyId, step) : step;
    run().catch((error: unknown) => {
      if (this.shuttingDown) return;
      const delayMs = Math.min(60_000, 1_000 * 2 ** attempt);
      this.log.error({ err: error, what, attempt, retryInMs: delayMs }, 'background step failed; trying again');
      const timer = setTimeout(() => {
        this.backgroundTimers.delete(timer);
        this.retried(what, studyId, step, attempt + 1);
      }, delayMs);
      timer.unref();
      this.backgroundTimers.add(timer);
    });
  }

  private async handleSiteConnected(siteId: string): Promise<void> {
    for (const task of await this.pendingTasksFor(siteId)) this.sessions.send(siteId, task);
    // A study may have been waiting for enough sites to open its next round.
    const waiting = await this.db.prisma.study.findMany({ where: { status: 'running' } });
    for (const study of waiting) {
      await this.locks.run(study.id, async () => {
        if (!(await this.findOpenRound(study.id))) await this.openNextRound(study.id);
      });
    }
  }

  /** Opens the study's next round if it is running, has none open, and enough sites are connected. */
  private async openNextRound(studyId: string): Promise<void> {
    if (this.shuttingDown) return;
    const study = await this.db.prisma.study.findUnique({ where: { id: studyId } });
    if (!study || study.status !== 'running') return;
    if (await this.findOpenRound(studyId)) return;
    const def = definitionOf(study);
    const last = await this.db.prisma.round.findFirst({ where: { studyId }, orderBy: { number: 'desc' } });
    const number = (last?.number ?? 0) + 1;
    if (number > study.totalRounds) return;
    const eligible = this.sessions
      .connectedSiteIds()
      .filter((id) => !def.sites || def.sites.includes(id))
      .sort();
    if (eligible.length < def.minSites) {
      this.log.info(
        { studyId, round: number, connected: eligible.length, minSites: def.minSites },
        'waiting for enough sites to connect before opening the round',
      );
      return;
    }
    const openedAt = new Date();
    const deadlineAt = new Date(openedAt.getTime() + def.roundTimeoutSeconds * 1000);
    const { result: round } = await this.audit.transaction(async (tx) => {
      const created = await tx.round.create({
        data: { id: randomUUID(), studyId, number, status: 'open', openedAt, deadlineAt, assignedSites: eligible },
      });
      await tx.study.update({ where: { id: studyId }, data: { currentRound: number } });
      return {
        result: created,
        audit: { kind: 'round.opened', actor: 'system', studyId, round: number, details: { cohort: eligible, deadlineAt: deadlineAt.toISOString() } },
      };
    });
    this.log.info({ studyId, round: number, sites: eligible }, 'round opened');
    this.armDeadline(round);
    const task = trainTask(study, round, await this.modelRef(studyId, number - 1));
    for (const siteId of eligible) this.sessions.send(siteId, task);
  }

  private async closeRoundIfComplete(roundId: string): Promise<void> {
    const round = await this.db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true, failures: true } });
    if (!round || round.status !== 'open') return;
    if (round.receipts.length + round.failures.length < round.assignedSites.length) return;
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = definitionOf(study);
    if (round.receipts.length >= def.minSites) {
      await this.aggregateOrRetry(round.id, round.studyId);
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
    const now = new Date();
    await this.audit.transaction(async (tx) => {
      await tx.round.update({ where: { id: round.id }, data: { status: 'failed', closedAt: now } });
      await tx.study.update({ where: { id: studyId }, data: { status: 'failed', finishedAt: now, error: message } });
      return {
        result: undefined,
        audit: [
          { kind: 'round.failed', actor: 'system', studyId, round: round.number, details: { reason: message } },
          { kind: 'study.failed', actor: 'system', studyId, details: { reason: message } },
        ],
      };
    });
    this.roundEnded(round);
    this.log.error({ studyId, round: round.number }, message);
    this.broadcastClosed(round.assignedSites, studyId, federation.StudyOutcome.STUDY_OUTCOME_FAILED, message, round.number - 1);
  }

  private async onDeadline(roundId: string): Promise<void> {
    const round = await this.db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true, failures: true } });
    if (!round || round.status !== 'open') return;
    const study = await this.db.prisma.study.findUnique({ where: { id: round.studyId } });
    if (!study) return;
    const def = definitionOf(study);
    if (round.receipts.length >= def.minSites) {
      this.log.warn(
        { studyId: study.id, round: round.number, reported: round.receipts.length, assigned: round.assignedSites.length },
        'round deadline passed; closing with the sites that reported',
      );
      await this.aggregateOrRetry(round.id, round.studyId);
      return;
    }
    const silent = round.assignedSites.filter((id) => !round.receipts.some((r) => r.siteId === id) && !round.failures.some((f) => f.siteId === id));
    const failed = round.failures.map((f) => `${f.siteId}: ${f.reason}`);
    await this.failRound(
      round,
      study.id,
      `round ${round.number} passed its deadline with ${round.receipts.length} of the ${def.minSites} updates it needs; ` +
        `no answer from ${silent.length > 0 ? silent.join(', ') : 'nobody'}${failed.length > 0 ? `; could not contribute: ${failed.join('; ')}` : ''}`,
    );
  }

  /**
   * Aggregates, and when that fails (a blob store gone read-only, a full disk, a database that went away) keeps the
   * round `aggregating`, shows the error on the study, and tries again with backoff (5 s doubling to 5 minutes), so
   * the round completes once the cause is fixed, without a restart.
   */
  private async aggregateOrRetry(roundId: string, studyId: string, attempt = 0): Promise<void> {
    try {
      await this.aggregateRound(roundId);
      if (attempt > 0) this.log.info({ roundId, attempt }, 'aggregation succeeded after retrying');
    } catch (error) {
      if (this.shuttingDown) throw error;
      const delayMs = Math.min(300_000, 5_000 * 2 ** attempt);
      const reason = (error as Error).message;
      this.log.error({ err: error, roundId, attempt, retryInMs: delayMs }, 'aggregation failed; retrying');
      // Shown on the study when the database takes it; the retry is scheduled either way.
      const round = await this.db.prisma.round.findUnique({ where: { id: roundId } }).catch(() => null);
      if (round) {
        await this.db.prisma.study
          .update({ where: { id: studyId }, data: { error: `aggregating round ${round.number} failed (${reason}); retrying in ${Math.round(delayMs / 1000)} s` } })
          .catch(() => undefined);
      }
      const timer = setTimeout(() => {
        this.retryTimers.delete(roundId);
        this.retried(`aggregating round ${roundId}`, studyId, () => this.aggregateOrRetry(roundId, studyId, attempt + 1));
      }, delayMs);
      timer.unref();
      this.retryTimers.set(roundId, timer);
    }
  }

  /**
   * FedAvg over the round's stored updates, one at a time so memory does not grow with the number of sites. The sum
   * and the new global model are written as blobs before the round is marked closed: a crash in between re-runs this
   * from the same inputs and gets the same content-addressed outputs.
   */
  private async aggregateRound(roundId: string): Promise<void> {
    // Only a round still collecting or aggregating: a retry that comes after it closed has nothing to do.
    const marked = await this.db.prisma.round.updateMany({ where: { id: roundId, status: { in: ['open', 'aggregating'] } }, data: { status: 'aggregating' } });
    if (marked.count === 0) return;
    const round = await this.db.prisma.round.findUniqueOrThrow({ where: { id: roundId }, include: { receipts: { orderBy: { receivedAt: 'asc' } } } });
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = definitionOf(study);
    const baseRow = await this.db.prisma.modelVersion.findUniqueOrThrow({
      where: { studyId_round: { studyId: study.id, round: round.number - 1 } },
    });
    const published =
      def.aggregation === 'ckks'
        ? await this.aggregator.sumEncrypted(round.id, round.receipts)
        : await this.aggregator.averagePlain(baseRow.sha256, round.receipts, round.assignedSites.length);
    const finished = round.number >= study.totalRounds;
    const now = new Date();
    const bins = evaluationBins(def.model.classes);
    const contributors = round.receipts.map((r) => r.siteId).sort();
    await this.audit.transaction(async (tx) => {
      // Recorded with the model it concerns, so a restart between publishing and asking still asks (on reconnection).
      await tx.roundEvaluation.createMany({ data: round.receipts.map((r) => ({ id: randomUUID(), roundId: round.id, siteId: r.siteId, bins })) });
      await tx.modelVersion.create({
        data: {
          id: randomUUID(),
          studyId: study.id,
          round: round.number,
          kind: published.kind,
          sha256: published.model.sha256,
          sizeBytes: published.model.size,
          parameterCount: baseRow.parameterCount,
        },
      });
      await tx.round.update({
        where: { id: round.id },
        data: { status: 'closed', closedAt: now, participants: published.sites, aggregateSha256: published.sum.sha256 },
      });
      // A retried aggregation that succeeds clears the error it left on the study.
      await tx.study.update({ where: { id: study.id }, data: { ...(finished ? { status: 'completed', finishedAt: now } : {}), error: null } });
      return {
        result: undefined,
        audit: [
          { kind: 'round.closed', actor: 'system', studyId: study.id, round: round.number, details: { contributors, participants: published.sites } },
          {
            kind: 'aggregate.published',
            actor: 'system',
            studyId: study.id,
            round: round.number,
            details: { kind: published.kind, sha256: published.model.sha256, bytes: published.model.size, contributors },
          },
          ...(finished ? [{ kind: 'study.completed', actor: 'system', studyId: study.id, details: { rounds: study.totalRounds } }] : []),
        ],
      };
    });
    this.roundEnded(round);
    this.log.info(
      { studyId: study.id, round: round.number, participants: published.sites, model: published.model.sha256, kind: published.kind },
      'round aggregated; new global model published',
    );
    // Sent before the next train task or StudyClosed: a site scores each model before it moves past it.
    await this.askForEvaluation(study, round.number, bins, contributors);
    if (finished) {
      this.broadcastClosed(
        round.assignedSites,
        study.id,
        federation.StudyOutcome.STUDY_OUTCOME_COMPLETED,
        `study ${def.name} completed ${study.totalRounds} rounds`,
        round.number,
      );
    } else {
      // Its own step: should it fail, it is tried again, while the published round stays as it is.
      this.retried(`opening the round after round ${round.number} of ${study.id}`, study.id, () => this.openNextRound(study.id));
    }
  }

  /** Evaluation is reported, never a gate: failing to send it is logged and left to the replay on reconnection. */
  private async askForEvaluation(study: Parameters<typeof evaluateTask>[0], round: number, bins: number, siteIds: string[]): Promise<void> {
    try {
      const task = evaluateTask(study, round, await this.modelRef(study.id, round), bins);
      for (const siteId of siteIds) this.sessions.send(siteId, task);
    } catch (error) {
      this.log.error({ err: error, studyId: study.id, round }, 'could not send the evaluation tasks');
    }
  }

  private broadcastClosed(siteIds: string[], studyId: string, outcome: federation.StudyOutcome, message: string, finalRound: number): void {
    const task = studyClosedTask(studyId, outcome, message, finalRound);
    for (const siteId of siteIds) this.sessions.send(siteId, task);
  }

  private async findOpenRound(studyId: string): Promise<OpenRound | null> {
    return this.db.prisma.round.findFirst({ where: { studyId, status: { in: ['open', 'aggregating'] } } });
  }

  private armDeadline(round: OpenRound): void {
    if (round.status === 'aggregating') {
      // A crash (or a failure) during aggregation: finish it now, from the stored updates.
      this.retried(`resuming the aggregation of round ${round.id}`, round.studyId, () => this.aggregateOrRetry(round.id, round.studyId));
      return;
    }
    if (!round.deadlineAt) return;
    this.clearDeadline(round.id);
    const delay = Math.max(0, round.deadlineAt.getTime() - Date.now());
    const timer = setTimeout(() => {
      this.deadlineTimers.delete(round.id);
      this.retried(`the deadline of round ${round.id}`, round.studyId, () => this.onDeadline(round.id));
    }, Math.min(delay, 2_147_000_000));
    timer.unref();
    this.deadlineTimers.set(round.id, timer);
  }

  /** A round closed, failed or was abandoned: no deadline, and no partial uploads kept for it. */
  private roundEnded(round: { id: string; studyId: string; number: number }): void {
    this.clearDeadline(round.id);
    this.aggregator.forgetRound(round.id);
    this.partials
      .removeRound(round.studyId, round.number)
      .catch((error: unknown) => this.log.warn({ err: error, studyId: round.studyId, round: round.number }, 'could not remove the partial uploads of a round'));
  }

  private clearDeadline(roundId: string): void {
    const timer = this.deadlineTimers.get(roundId);
    if (timer) clearTimeout(timer);
    this.deadlineTimers.delete(roundId);
  }
}
