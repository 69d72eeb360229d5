import { failpoint, federation } from '@federa/shared';
import { timerKey, type OpenRound, type RoundContext } from './round-context.js';
import type { PublishedRound } from './aggregator.js';
import type { RoundPublishing } from './round-publish.js';
import type { RoundSwitching } from './round-switch.js';
import { definitionOf, type StudyRow } from './tasks.js';

/**
 * Closing a round: FedAvg over the accepted updates and publishing the result, or failing the round (and the
 * study) with a reason that names who was missing. A failed aggregation is retried; it never hangs the round.
 */
export class RoundClosing {
  constructor(
    private readonly ctx: RoundContext,
    private readonly publishing: RoundPublishing,
    private readonly switching: RoundSwitching,
    /** Opens the study's next round once a round is published (if the study is running and has rounds left). */
    private readonly openNext: (studyId: string) => Promise<void>,
  ) {}

  /**
   * Aggregates, and when that fails (a blob store gone read-only, a full disk, a database that went away) keeps the
   * round `aggregating`, shows the error on the study, and tries again with backoff (5 s doubling to 5 minutes), so
   * the round completes once the cause is fixed, without a restart.
   */
  async aggregateOrRetry(roundId: string, studyId: string, attempt = 0): Promise<void> {
    const { db, log, steps } = this.ctx;
    try {
      await this.aggregateRound(roundId);
      if (attempt > 0) log.info({ studyId, roundId, attempt }, 'aggregation succeeded after retrying');
    } catch (error) {
      if (steps.shuttingDown) throw error;
      const delayMs = Math.min(300_000, 5_000 * 2 ** attempt);
      const reason = (error as Error).message;
      // Shown on the study when the database takes it; the retry is scheduled either way.
      const round = await db.prisma.round.findUnique({ where: { id: roundId } }).catch(() => null);
      log.error({ err: error, studyId, round: round?.number, roundId, attempt, retryInMs: delayMs }, 'aggregation failed; retrying');
      if (round) {
        await db.prisma.study
          .update({ where: { id: studyId }, data: { error: `aggregating round ${round.number} failed (${reason}); retrying in ${Math.round(delayMs / 1000)} s` } })
          .catch(() => undefined);
      }
      steps.schedule(timerKey.aggregationRetry(roundId), delayMs, () =>
        steps.run(`aggregating round ${roundId}`, studyId, () => this.aggregateOrRetry(roundId, studyId, attempt + 1)),
      );
    }
  }

  /**
   * FedAvg over the round's stored updates. The sum and the new global model are written as blobs before the round
   * is marked closed: a crash in between re-runs this from the same inputs and gets the same content-addressed
   * outputs.
   */
  private async aggregateRound(roundId: string): Promise<void> {
    const { db, aggregator, steps, log, metrics } = this.ctx;
    // Only a round still collecting or aggregating: a retry that comes after it closed has nothing to do.
    const marked = await db.prisma.round.updateMany({ where: { id: roundId, status: { in: ['open', 'aggregating'] } }, data: { status: 'aggregating' } });
    if (marked.count === 0) return;
    const summing = performance.now();
    await failpoint('round.aggregate');
    const round = await db.prisma.round.findUniqueOrThrow({ where: { id: roundId }, include: { receipts: { orderBy: { receivedAt: 'asc' } } } });
    const study = await db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = definitionOf(study);
    if (def.aggregation === 'multiparty') {
      // Summed here; published once every epoch member has sent its key-switching share (RoundSwitching).
      await this.switching.begin(round, def);
      metrics.phase('aggregate', (performance.now() - summing) / 1000);
      return;
    }
    const baseRow = await db.prisma.modelVersion.findUniqueOrThrow({ where: { studyId_round: { studyId: study.id, round: round.number - 1 } } });
    const published =
      def.aggregation === 'ckks'
        ? await aggregator.sumEncrypted(round.id, round.receipts)
        : await aggregator.averagePlain(baseRow.sha256, round.receipts, round.assignedSites.length);
    metrics.phase('aggregate', (performance.now() - summing) / 1000);
    await this.publishAndContinue(study, round, baseRow.parameterCount, published);
  }

  /** A multiparty round's switched sum: published like any round's model. Call under the study's lock. */
  async publishSwitched(roundId: string, published: PublishedRound): Promise<void> {
    const { db } = this.ctx;
    const round = await db.prisma.round.findUniqueOrThrow({ where: { id: roundId }, include: { receipts: { orderBy: { receivedAt: 'asc' } } } });
    const study = await db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const baseRow = await db.prisma.modelVersion.findUniqueOrThrow({ where: { studyId_round: { studyId: study.id, round: round.number - 1 } } });
    await this.publishAndContinue(study, round, baseRow.parameterCount, published);
  }

  private async publishAndContinue(
    study: StudyRow & { status: string },
    round: Parameters<RoundPublishing['publish']>[2] & { deadlineAt: Date | null },
    parameters: number,
    published: PublishedRound,
  ): Promise<void> {
    const { steps, log, metrics } = this.ctx;
    const def = definitionOf(study);
    await failpoint('round.publish');
    const publishing = performance.now();
    const finished = await this.publishing.publish(study, def, round, parameters, published);
    metrics.phase('publish', (performance.now() - publishing) / 1000);
    metrics.round('closed');
    this.roundEnded(round);
    if (finished) return;
    if (study.status === 'paused') {
      log.info({ studyId: study.id, round: round.number }, 'study is paused: the next round opens when it is resumed');
      return;
    }
    // Its own step: should it fail, it is tried again, while the published round stays as it is.
    steps.run(`opening the round after round ${round.number} of ${study.id}`, study.id, () => this.openNext(study.id));
  }

  /** Fails the round and the study with `message` (which says why and who was missing); every site is told. */
  async failRound(round: OpenRound, studyId: string, message: string): Promise<void> {
    const now = new Date();
    await this.ctx.audit.transaction(async (tx) => {
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
    this.ctx.metrics.round('failed');
    this.roundEnded(round);
    this.ctx.log.error({ studyId, round: round.number }, message);
    this.publishing.broadcastClosed(round.assignedSites, studyId, federation.StudyOutcome.STUDY_OUTCOME_FAILED, message, round.number - 1);
  }

  /** A round closed, failed or was abandoned: no deadline, no running sum and no partial uploads kept for it. */
  roundEnded(round: { id: string; studyId: string; number: number }): void {
    const { steps, aggregator, partials, log } = this.ctx;
    steps.cancel(timerKey.deadline(round.id));
    aggregator.forgetRound(round.id);
    partials
      .removeRound(round.studyId, round.number)
      .catch((error: unknown) => log.warn({ err: error, studyId: round.studyId, round: round.number }, 'could not remove the partial uploads of a round'));
  }
}
