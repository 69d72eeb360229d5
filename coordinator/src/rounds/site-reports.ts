import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { architectureTask, createLogger, federation, isStatisticsRound, parseStatisticsReport, studyStatisticsPlan } from '@federa/shared';
import { DATABASE } from '../app/tokens.js';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { CoordinatorMetrics } from '../metrics/index.js';
import type { Database } from '../persistence/index.js';
import { validateEvaluationReport } from './evaluation.js';
import { RoundsService } from './rounds.service.js';
import { refuseDropped } from './upload-header.js';
import { definitionOf } from './tasks.js';

const MAX_MESSAGE = 1_000;

/** Refusal reason codes as the coordinator stores and shows them. */
export const REFUSAL_REASONS: Partial<Record<federation.RefusalReason, string>> = {
  [federation.RefusalReason.REFUSAL_REASON_NOT_APPROVED]: 'not-approved',
  [federation.RefusalReason.REFUSAL_REASON_REJECTED]: 'rejected',
  [federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH]: 'definition-mismatch',
  [federation.RefusalReason.REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED]: 'plaintext-not-allowed',
  [federation.RefusalReason.REFUSAL_REASON_COHORT_TOO_SMALL]: 'cohort-too-small',
  [federation.RefusalReason.REFUSAL_REASON_TOO_MANY_ROUNDS]: 'too-many-rounds',
  [federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS]: 'aggregate-too-few-contributions',
  [federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH]: 'aggregate-mismatch',
  [federation.RefusalReason.REFUSAL_REASON_NOT_IN_COHORT]: 'not-in-cohort',
  [federation.RefusalReason.REFUSAL_REASON_METRICS_WITHHELD]: 'metrics-withheld',
  [federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID]: 'key-epoch-invalid',
  [federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID]: 'share-request-invalid',
  [federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET]: 'privacy-budget',
  [federation.RefusalReason.REFUSAL_REASON_STATISTICS_TOO_FEW]: 'statistics-too-few',
};

/** The tasks a site may refuse, as the coordinator stores and shows them. */
type RefusedTask = 'train' | 'evaluate' | 'key-switch';

const REFUSED_TASKS: Partial<Record<federation.TaskKind, RefusedTask>> = {
  [federation.TaskKind.TASK_KIND_TRAIN]: 'train',
  [federation.TaskKind.TASK_KIND_EVALUATE]: 'evaluate',
  [federation.TaskKind.TASK_KIND_KEY_SWITCH]: 'key-switch',
};

/**
 * What a site refuses a key-switch task for (site-agent task-gate.ts and multiparty-keys.ts): its approval of the
 * study, the epoch's collective key, or the sum it is asked to help decrypt.
 */
const KEY_SWITCH_REFUSALS = new Set([
  federation.RefusalReason.REFUSAL_REASON_NOT_APPROVED,
  federation.RefusalReason.REFUSAL_REASON_REJECTED,
  federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH,
  federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID,
  federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID,
  federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS,
]);

/** Refusals of a published aggregate: about a round's model, which a site may refuse after the round closed. */
const AGGREGATE_REFUSALS = new Set([
  federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS,
  federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH,
]);

const FAILURE_REASONS: Partial<Record<federation.FailureReason, string>> = {
  [federation.FailureReason.FAILURE_REASON_DIVERGED]: 'diverged',
  [federation.FailureReason.FAILURE_REASON_NO_USABLE_DATA]: 'no-usable-data',
  [federation.FailureReason.FAILURE_REASON_UNSUPPORTED_TASK]: 'unsupported-task',
  [federation.FailureReason.FAILURE_REASON_SITE_ERROR]: 'site-error',
};

/**
 * The differential privacy a site says it has spent on the study, checked: both figures or neither (an epsilon
 * means nothing without the delta it holds at).
 */
function validatePrivacySpend(report: federation.MetricsReport): { privacyEpsilon: number | null; privacyDelta: number | null } {
  const { privacyEpsilon: epsilon, privacyDelta: delta } = report;
  if (epsilon === undefined && delta === undefined) return { privacyEpsilon: null, privacyDelta: null };
  if (epsilon === undefined) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'metrics privacy_epsilon is required with privacy_delta');
  if (delta === undefined) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'metrics privacy_delta is required with privacy_epsilon: the delta the epsilon holds at');
  if (!Number.isFinite(epsilon) || epsilon < 0) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `metrics privacy_epsilon must be a finite number >= 0, got ${epsilon}`);
  }
  if (!Number.isFinite(delta) || delta <= 0 || delta >= 1) {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `metrics privacy_delta must be within (0, 1), got ${delta}`);
  }
  return { privacyEpsilon: epsilon, privacyDelta: delta };
}

/** What sites report besides their updates: metrics, failures, evaluations and policy refusals. */
@Injectable()
export class SiteReports {
  private readonly log = createLogger('site-reports');

  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(RoundsService) private readonly rounds: RoundsService,
    @Inject(CoordinatorMetrics) private readonly metrics: CoordinatorMetrics,
  ) {}

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
    const privacy = validatePrivacySpend(report);
    const round = await this.participantRound(siteId, report.studyId, report.round);
    if (privacy.privacyDelta !== null) await this.checkPrivacyOfStudy(report.studyId, privacy.privacyDelta);
    const data = { loss: report.loss, accuracy: report.accuracy, samples: report.samples ?? null, ...privacy, reportedAt: new Date() };
    await this.db.prisma.roundMetric.upsert({
      where: { roundId_siteId_kind: { roundId: round.id, siteId, kind } },
      create: { id: randomUUID(), roundId: round.id, siteId, kind, ...data },
      update: data,
    });
  }

  /**
   * A site that cannot contribute (diverged, no usable data, a task it cannot run) says so; the round stops waiting
   * for it and closes as soon as the other assigned sites have reported. Nothing it sent is counted.
   */
  async recordFailure(siteId: string, failure: federation.RoundFailure): Promise<void> {
    const reason = FAILURE_REASONS[failure.reason];
    if (!reason) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'round failure needs reason DIVERGED, NO_USABLE_DATA, UNSUPPORTED_TASK or SITE_ERROR');
    const message = failure.message.trim().slice(0, MAX_MESSAGE);
    const round = await this.participantRound(siteId, failure.studyId, failure.round);
    // A member that cannot compute its key-switching share leaves a sum that can never be switched: the round runs
    // again at once without it (RoundSwitching), rather than waiting for the switch's deadline.
    if (round.status === 'switching') {
      await this.rounds.switching.memberRefused(siteId, failure.studyId, failure.round, { task: 'key-switch', reason, failed: true }, async () => {
        this.log.warn({ siteId, studyId: failure.studyId, round: failure.round, reason, message }, 'member cannot compute its key-switching share');
      });
    } else await this.stopWaitingFor(siteId, round, reason, message);
    this.metrics.siteFailed(reason);
  }

  /**
   * A site's policy refused a task. A refused train task is the site's answer for the round (it closes without
   * it); a refused evaluation is not asked again. A member refusing a multiparty round's key epoch or key-switch
   * task leaves a sum that can never be switched: the round runs again without it at once (RoundSwitching). The
   * refusal shows in the study's status.
   */
  async recordRefusal(siteId: string, refusal: federation.Refusal): Promise<void> {
    const reason = REFUSAL_REASONS[refusal.reason];
    if (!reason) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'refusal needs a reason (NOT_APPROVED, REJECTED, DEFINITION_MISMATCH, ...)');
    const task = REFUSED_TASKS[refusal.task];
    if (!task) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'refusal needs task TRAIN, EVALUATE or KEY_SWITCH');
    const reasonName = federation.refusalReasonToJSON(refusal.reason);
    if (task === 'key-switch' && !KEY_SWITCH_REFUSALS.has(refusal.reason)) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `a key-switch task is refused for NOT_APPROVED, REJECTED, DEFINITION_MISMATCH, KEY_EPOCH_INVALID, SHARE_REQUEST_INVALID or AGGREGATE_TOO_FEW_CONTRIBUTIONS, not ${reasonName}`,
      );
    }
    if (refusal.reason === federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID && task !== 'key-switch') {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `${reasonName} refuses a key-switch task, not a ${task} task`);
    }
    if (refusal.reason === federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID && task === 'evaluate') {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `${reasonName} refuses a train or key-switch task, not an evaluate task`);
    }
    // Only training spends privacy: evaluating a published model does not (key-switch is refused above).
    if (refusal.reason === federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET && task !== 'train') {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `${reasonName} refuses a train task, not an ${task} task`);
    }
    if (refusal.studyHash !== '' && !/^[0-9a-f]{64}$/.test(refusal.studyHash)) {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, 'refusal study_hash must be empty or a lower-case hex SHA-256');
    }
    const message = refusal.message.trim().slice(0, MAX_MESSAGE);
    const round = await this.participantRound(siteId, refusal.studyId, refusal.round);
    const store = (update: boolean) => this.storeRefusal(siteId, refusal, task, reason, message, update);
    if (task === 'key-switch' || refusal.reason === federation.RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID) {
      await this.rounds.switching.memberRefused(siteId, refusal.studyId, refusal.round, { task: task === 'key-switch' ? task : 'train', reason }, () => store(true));
      return;
    }
    // A closed round's aggregate refused (the final model of a completed study): recorded, but it is not the site's
    // answer to the round's task, which stands, and nothing waits for it.
    const ofClosedRound = task === 'train' && round.status === 'closed' && AGGREGATE_REFUSALS.has(refusal.reason);
    if (task === 'evaluate') {
      const asked = await this.db.prisma.roundEvaluation.updateMany({
        where: { roundId: round.id, siteId, reportedAt: null },
        data: { refusedReason: reason },
      });
      if (asked.count === 0) {
        throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} has no open evaluation of round ${refusal.round} of study ${refusal.studyId} to refuse`);
      }
    }
    await store(!ofClosedRound);
    if (task === 'train' && !ofClosedRound) await this.stopWaitingFor(siteId, round, `refused: ${reason}`, message);
  }

  /** The refusal as the study's status shows it; `update`: a second refusal of the same task replaces the first. */
  private async storeRefusal(siteId: string, refusal: federation.Refusal, task: RefusedTask, reason: string, message: string, update: boolean): Promise<void> {
    const data = { reason, message, studyHash: refusal.studyHash, reportedAt: new Date() };
    await this.db.prisma.siteRefusal.upsert({
      where: { studyId_round_siteId_task: { studyId: refusal.studyId, round: refusal.round, siteId, task } },
      create: { id: randomUUID(), studyId: refusal.studyId, round: refusal.round, siteId, task, ...data },
      update: update ? data : {},
    });
    this.metrics.siteRefused(task, reason);
    this.log.warn({ siteId, studyId: refusal.studyId, round: refusal.round, task, reason, message }, 'site policy refused a task');
  }

  /**
   * A site's evaluation of a round's published model, checked against the study (its classes, the bins asked for,
   * consistent shapes) and accepted once per site and round. Refusals name the offending field.
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
    const def = definitionOf(study);
    const segmentation = architectureTask(def.model.architecture) === 'segmentation' ? { pixelsPerImage: def.model.inputSize * def.model.inputSize } : undefined;
    const validated = validateEvaluationReport(report, { classNames: def.classNames, bins: request.bins, ...(segmentation ? { segmentation } : {}) });
    // Conditional on still being unanswered, so two racing reports cannot both be recorded.
    const recorded = await this.db.prisma.roundEvaluation.updateMany({
      where: { id: request.id, reportedAt: null },
      data: {
        reportedAt: new Date(),
        ...(validated.kind === 'counts' ? { counts: { ...validated.counts } } : { figures: { ...validated.figures } }),
        refusedReason: null,
        backend: report.backend,
        seconds: report.seconds,
      },
    });
    if (recorded.count === 0) throw duplicate;
    this.log.info({ siteId, studyId: study.id, round: report.round, shared: validated.kind }, 'evaluation received');
  }

  /**
   * A statistics round's totals as a site decrypted them: checked against the study's plan and hash, kept from the
   * first site, compared with the later ones (a site whose totals differ decrypted another sum: listed and logged).
   * Answers the site's evaluate task for the round.
   */
  async recordStatistics(siteId: string, report: federation.StatisticsReport): Promise<federation.StatisticsAck> {
    const study = await this.db.prisma.study.findUnique({ where: { id: report.studyId } });
    if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${report.studyId} does not exist`);
    const def = definitionOf(study);
    if (!isStatisticsRound(def, report.round)) {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${report.round} of study ${report.studyId} is not a statistics round`);
    }
    const round = await this.participantRound(siteId, report.studyId, report.round);
    if (round.status !== 'closed') throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${report.round} of study ${report.studyId} has not published its sum yet`);
    const parsed = parseStatisticsReport(report.statisticsJson, report.sha256, studyStatisticsPlan(def));
    if (!parsed.ok) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `statistics report refused: ${parsed.problem}`);
    const first = await this.db.prisma.round.updateMany({
      where: { id: round.id, statisticsSha256: null },
      data: { statistics: parsed.statistics, statisticsSha256: report.sha256 },
    });
    const stored = await this.db.prisma.round.findUniqueOrThrow({ where: { id: round.id }, select: { statisticsSha256: true, statisticsMismatches: true } });
    const matches = stored.statisticsSha256 === report.sha256;
    if (!matches && !stored.statisticsMismatches.includes(siteId)) {
      await this.db.prisma.round.update({ where: { id: round.id }, data: { statisticsMismatches: { push: siteId } } });
      this.log.error({ siteId, studyId: study.id, round: report.round, reported: report.sha256, stored: stored.statisticsSha256 }, 'a site decrypted other statistics than the first site');
    }
    await this.db.prisma.roundEvaluation.updateMany({ where: { roundId: round.id, siteId, reportedAt: null }, data: { reportedAt: new Date(), refusedReason: null } });
    this.log.info({ siteId, studyId: study.id, round: report.round, first: first.count > 0, matches }, 'statistics received');
    return { matches };
  }

  private async stopWaitingFor(siteId: string, round: Awaited<ReturnType<SiteReports['participantRound']>>, reason: string, message: string): Promise<void> {
    const { studyId, number } = round;
    if (round.status !== 'open') {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `round ${number} of study ${studyId} is ${round.status}`);
    }
    const uploaded = await this.db.prisma.updateReceipt.count({ where: { roundId: round.id, siteId } });
    if (uploaded > 0) {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `site ${siteId} already uploaded for round ${number}; its update stands`);
    }
    await this.db.prisma.roundFailure.upsert({
      where: { roundId_siteId: { roundId: round.id, siteId } },
      create: { id: randomUUID(), roundId: round.id, siteId, reason, message },
      update: { reason, message },
    });
    this.log.warn({ siteId, studyId, round: number, reason, message }, 'site cannot contribute to the round');
    this.rounds.closeRoundSoon(round.studyId, round.id);
  }

  /**
   * A spend is reported only for a study with differential privacy, and at the study's own delta: an epsilon at
   * another delta cannot be read against the study's budget, and would show a misleading figure in its status.
   */
  private async checkPrivacyOfStudy(studyId: string, delta: number): Promise<void> {
    const study = await this.db.prisma.study.findUniqueOrThrow({ where: { id: studyId }, select: { spec: true } });
    const privacy = definitionOf(study).privacy;
    if (!privacy || privacy.mode === 'none') {
      throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `metrics privacy_epsilon: study ${studyId} has no differential privacy, so there is no spend to report`);
    }
    if (privacy.delta !== delta) {
      throw new FederationError(
        GrpcStatus.INVALID_ARGUMENT,
        `metrics privacy_delta ${delta} is not study ${studyId}'s privacy.delta ${privacy.delta}: report the epsilon at the study's delta`,
      );
    }
  }

  /** The round, if the calling site was assigned to it; reports come only from participants. */
  private async participantRound(siteId: string, studyId: string, number: number) {
    const round = await this.db.prisma.round.findUnique({ where: { studyId_number: { studyId, number } }, include: { study: { select: { id: true, droppedSites: true } } } });
    if (!round || !round.assignedSites.includes(siteId)) {
      throw new FederationError(GrpcStatus.PERMISSION_DENIED, `site ${siteId} is not a participant of round ${number} of study ${studyId}`);
    }
    refuseDropped(round.study, siteId);
    return round;
  }
}
