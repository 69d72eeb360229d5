import { randomUUID } from 'node:crypto';
import { timerKey, type OpenRound, type RoundContext } from './round-context.js';
import type { RoundClosing } from './round-close.js';
import type { RoundPublishing } from './round-publish.js';
import type { RoundSwitching } from './round-switch.js';
import { definitionOf, trainTask } from './tasks.js';

interface RoundAnswers extends OpenRound {
  openedAt: Date;
  keyEpoch: number | null;
  receipts: Array<{ siteId: string }>;
  failures: Array<{ siteId: string; reason: string; message: string }>;
}

/**
 * Collecting: a round waits for an answer (an update, a failure, a refusal) from every assigned site, and stops
 * waiting for a site that left and did not come back within the grace period. At the deadline it closes with those
 * who reported if at least the study's minimum did; otherwise it is extended once (if the study says so) or fails,
 * naming the sites it did not hear from.
 */
export class RoundCollection {
  constructor(
    private readonly ctx: RoundContext,
    private readonly closing: RoundClosing,
    private readonly publishing: RoundPublishing,
    private readonly switching: RoundSwitching,
  ) {}

  /** Asks for the round to be closed once every assigned site has answered. */
  closeRoundSoon(studyId: string, roundId: string): void {
    this.ctx.steps.run(`closing round ${roundId}`, studyId, () => this.closeRoundIfComplete(roundId));
  }

  /** Call under the study's lock. Closes the round if every assigned site has answered. */
  async closeRoundIfComplete(roundId: string): Promise<void> {
    const round = await this.answers(roundId);
    if (!round || round.status !== 'open') return;
    if (round.receipts.length + round.failures.length < round.assignedSites.length) return;
    const study = await this.ctx.db.prisma.study.findUniqueOrThrow({ where: { id: round.studyId } });
    const def = definitionOf(study);
    if (round.receipts.length >= def.minSites) {
      this.collected(round);
      await this.closing.aggregateOrRetry(round.id, round.studyId);
      return;
    }
    await this.closing.failRound(
      round,
      study.id,
      `round ${round.number} has ${round.receipts.length} of the ${def.minSites} updates it needs; sites that could not contribute: ${describeFailures(round)}`,
    );
  }

  /** Runs the round's deadline (or, for a round found aggregating at start-up, finishes its aggregation). */
  armDeadline(round: OpenRound): void {
    const { steps } = this.ctx;
    if (round.status === 'switching') {
      this.switching.armDeadline(round);
      return;
    }
    if (round.status === 'aggregating') {
      // A crash (or a failure) during aggregation: finish it now, from the stored updates.
      steps.run(`resuming the aggregation of round ${round.id}`, round.studyId, () => this.closing.aggregateOrRetry(round.id, round.studyId));
      return;
    }
    if (!round.deadlineAt) return;
    steps.schedule(timerKey.deadline(round.id), round.deadlineAt.getTime() - Date.now(), () =>
      steps.run(`the deadline of round ${round.id}`, round.studyId, () => this.onDeadline(round.id)),
    );
  }

  private async onDeadline(roundId: string): Promise<void> {
    const { db, log } = this.ctx;
    const round = await this.answers(roundId);
    if (!round || round.status !== 'open') return;
    const study = await db.prisma.study.findUnique({ where: { id: round.studyId } });
    if (!study) return;
    const def = definitionOf(study);
    const silent = round.assignedSites.filter((id) => !round.receipts.some((r) => r.siteId === id) && !round.failures.some((f) => f.siteId === id));
    if (round.keyEpoch !== null && silent.length > 0) {
      // Every member of a multiparty epoch is needed to decrypt its sum: the round runs again without the silent ones.
      await this.switching.redo(round.id, silent, `no answer from ${silent.join(', ')} by the round's deadline`);
      return;
    }
    if (round.receipts.length >= def.minSites) {
      log.warn(
        { studyId: study.id, round: round.number, reported: round.receipts.length, assigned: round.assignedSites.length, silent },
        'round deadline passed; closing with the sites that reported',
      );
      this.collected(round);
      await this.closing.aggregateOrRetry(round.id, round.studyId);
      return;
    }
    const shortBy = `${round.receipts.length} of the ${def.minSites} updates it needs; no answer from ${silent.length > 0 ? silent.join(', ') : 'nobody'}`;
    if (def.deadlineAction === 'extend-once' && round.extensions === 0) {
      await this.extend(round, study, def.roundTimeoutSeconds, shortBy);
      return;
    }
    const failed = round.failures.length > 0 ? `; could not contribute: ${describeFailures(round)}` : '';
    const extended = round.extensions > 0 ? ' (already extended once)' : '';
    await this.closing.failRound(round, study.id, `round ${round.number} passed its deadline${extended} with ${shortBy}${failed}`);
  }

  /** Moves the deadline out by one round timeout, once; the sites still working are sent their task again with it. */
  private async extend(round: RoundAnswers, study: Parameters<typeof trainTask>[0], seconds: number, shortBy: string): Promise<void> {
    const { audit, sessions, log } = this.ctx;
    const deadlineAt = new Date(Date.now() + seconds * 1000);
    const { result: updated } = await audit.transaction(async (tx) => {
      const row = await tx.round.update({ where: { id: round.id }, data: { deadlineAt, extensions: { increment: 1 } } });
      return {
        result: row,
        audit: {
          kind: 'round.extended',
          actor: 'system',
          studyId: study.id,
          round: round.number,
          details: { reason: `deadline passed with ${shortBy}`, deadlineAt: deadlineAt.toISOString() },
        },
      };
    });
    log.warn({ studyId: study.id, round: round.number, deadlineAt }, `round deadline passed with ${shortBy}; extended once`);
    this.armDeadline(updated);
    const task = trainTask(study, updated, await this.publishing.modelRef(study.id, round.number - 1));
    for (const siteId of round.assignedSites) {
      if (!round.receipts.some((r) => r.siteId === siteId) && !round.failures.some((f) => f.siteId === siteId)) sessions.send(siteId, task);
    }
  }

  /**
   * A site left while assigned to open rounds it has not answered: if it is not back within reconnectGraceSeconds,
   * the rounds stop waiting for it (it is listed among their failures as disconnected) instead of waiting for the
   * deadline.
   */
  async waitForReturn(siteId: string): Promise<void> {
    const { db, steps, config } = this.ctx;
    if (steps.shuttingDown) return;
    const rounds = await db.prisma.round.findMany({
      where: {
        assignedSites: { has: siteId },
        OR: [
          { status: 'open', receipts: { none: { siteId } }, failures: { none: { siteId } } },
          // A multiparty round needs every epoch member until its sum is switched, whatever it already sent.
          { status: { in: ['open', 'aggregating', 'switching'] }, keyEpoch: { not: null }, keySwitchShares: { none: { siteId } } },
        ],
      },
    });
    for (const round of rounds) {
      steps.schedule(timerKey.grace(siteId, round.id), config.reconnectGraceSeconds * 1000, () =>
        steps.run(`site ${siteId} did not come back`, round.studyId, () => this.markDisconnected(round.id, siteId)),
      );
    }
  }

  /** The site is back: nothing waits for it to be lost any more. */
  siteReturned(siteId: string): void {
    this.ctx.steps.cancelAll(timerKey.graceOf(siteId));
  }

  private async markDisconnected(roundId: string, siteId: string): Promise<void> {
    const { sessions, audit, log, config } = this.ctx;
    if (sessions.isConnected(siteId)) return;
    const round = await this.answers(roundId);
    const message = `site ${siteId} lost its connection during the round and did not come back within ${config.reconnectGraceSeconds} s`;
    if (round && round.keyEpoch !== null && ['open', 'aggregating', 'switching'].includes(round.status) && round.assignedSites.includes(siteId)) {
      await this.switching.redo(roundId, [siteId], message);
      return;
    }
    if (!round || round.status !== 'open' || round.receipts.some((r) => r.siteId === siteId) || round.failures.some((f) => f.siteId === siteId)) return;
    await audit.transaction(async (tx) => {
      await tx.roundFailure.create({ data: { id: randomUUID(), roundId, siteId, reason: 'disconnected', message } });
      return { result: undefined, audit: { kind: 'round.site-lost', actor: 'system', studyId: round.studyId, round: round.number, siteId, details: { reason: message } } };
    });
    log.warn({ siteId, studyId: round.studyId, round: round.number }, message);
    await this.closeRoundIfComplete(roundId);
  }

  /** The round stops collecting and goes on to be summed: how long collecting took (a failed round is counted as failed instead). */
  private collected(round: RoundAnswers): void {
    this.ctx.metrics.phase('collect', (Date.now() - round.openedAt.getTime()) / 1000);
  }

  private answers(roundId: string): Promise<RoundAnswers | null> {
    return this.ctx.db.prisma.round.findUnique({ where: { id: roundId }, include: { receipts: true, failures: true } });
  }
}

function describeFailures(round: RoundAnswers): string {
  return round.failures.map((f) => `${f.siteId}: ${f.reason} (${f.message})`).join('; ');
}
