import { createHash, randomUUID } from 'node:crypto';
import { failpoint, type federation } from '@federa/shared';
import { ACTIVE_STUDY, findOpenRound, type RoundContext } from './round-context.js';
import type { RoundCollection } from './round-collect.js';
import type { KeyEpochs } from '../multiparty/index.js';
import type { RoundPublishing } from './round-publish.js';
import type { RoundSwitching } from './round-switch.js';
import { definitionOf, evaluateTask, trainTask } from './tasks.js';

/**
 * Opening and dispatch: a running study's next round opens once at least its minimum of eligible sites is
 * connected, with a cohort of at most its target; each site gets its train task then, and again (with any
 * evaluation it owes) whenever it reconnects.
 */
export class RoundOpening {
  constructor(
    private readonly ctx: RoundContext,
    private readonly collection: RoundCollection,
    private readonly publishing: RoundPublishing,
    private readonly switching: RoundSwitching,
    private readonly epochs: KeyEpochs,
  ) {}

  /** Call under the study's lock. Opens the next round if the study is running, has none open, and enough sites are connected. */
  async openNextRound(studyId: string): Promise<void> {
    const { db, sessions, audit, log, steps } = this.ctx;
    if (steps.shuttingDown) return;
    const study = await db.prisma.study.findUnique({ where: { id: studyId } });
    if (!study || study.status !== 'running') return;
    if (await findOpenRound(db, studyId)) return;
    const def = definitionOf(study);
    const last = await db.prisma.round.findFirst({ where: { studyId }, orderBy: { number: 'desc' } });
    const number = (last?.number ?? 0) + 1;
    if (number > study.totalRounds) return;
    const eligible = sessions
      .connectedSiteIds()
      .filter((id) => (!def.sites || def.sites.includes(id)) && !study.droppedSites.includes(id))
      .sort();
    if (eligible.length < def.minSites) {
      log.info({ studyId, round: number, connected: eligible.length, minSites: def.minSites }, 'waiting for enough sites to connect before opening the round');
      return;
    }
    const cohort = chooseCohort(studyId, number, eligible, def.targetSites);
    // Multiparty: the round runs under the epoch whose members are exactly its cohort (a new one if that changed).
    const keyEpoch = def.aggregation === 'multiparty' ? (await this.epochs.epochFor(studyId, cohort)).number : null;
    const openedAt = new Date();
    const deadlineAt = new Date(openedAt.getTime() + def.roundTimeoutSeconds * 1000);
    const { result: round } = await audit.transaction(async (tx) => {
      const created = await tx.round.create({
        data: { id: randomUUID(), studyId, number, status: 'open', openedAt, deadlineAt, assignedSites: cohort, keyEpoch },
      });
      await tx.study.update({ where: { id: studyId }, data: { currentRound: number } });
      return {
        result: created,
        audit: {
          kind: 'round.opened',
          actor: 'system',
          studyId,
          round: number,
          details: {
            cohort,
            deadlineAt: deadlineAt.toISOString(),
            ...(cohort.length < eligible.length ? { eligible: eligible.length } : {}),
            ...(keyEpoch !== null ? { keyEpoch } : {}),
          },
        },
      };
    });
    this.ctx.metrics.round('opened');
    log.info({ studyId, round: number, sites: cohort }, 'round opened');
    await failpoint('round.dispatch');
    this.collection.armDeadline(round);
    const task = trainTask(study, round, await this.publishing.modelRef(studyId, number - 1));
    for (const siteId of cohort) sessions.send(siteId, task);
  }

  /**
   * The tasks a site still owes: evaluations of published models it has neither answered nor refused (oldest first,
   * so they come before training on the next model), then open rounds it is assigned to and has not answered. A
   * study the site was dropped from asks nothing more of it.
   */
  async pendingTasksFor(siteId: string): Promise<federation.Task[]> {
    const { db } = this.ctx;
    const stillIn = { NOT: { droppedSites: { has: siteId } } };
    const evaluations = await db.prisma.roundEvaluation.findMany({
      where: { siteId, reportedAt: null, refusedReason: null, round: { study: { status: { in: [...ACTIVE_STUDY, 'completed'] }, ...stillIn } } },
      include: { round: { include: { study: true } } },
      orderBy: { requestedAt: 'asc' },
    });
    const rounds = await db.prisma.round.findMany({
      where: { status: 'open', assignedSites: { has: siteId }, receipts: { none: { siteId } }, failures: { none: { siteId } }, study: stillIn },
      include: { study: true },
      orderBy: { openedAt: 'asc' },
    });
    const tasks: federation.Task[] = [];
    for (const evaluation of evaluations) {
      const { round } = evaluation;
      tasks.push(evaluateTask(round.study, round.number, await this.publishing.modelRef(round.studyId, round.number), evaluation.bins));
    }
    for (const round of rounds) tasks.push(trainTask(round.study, round, await this.publishing.modelRef(round.studyId, round.number - 1)));
    tasks.push(...(await this.switching.pendingFor(siteId)));
    return tasks;
  }

  /** A site connected: it gets what it owes, and a study that was waiting for sites may open its round. */
  async siteConnected(siteId: string): Promise<void> {
    const { db, locks, sessions } = this.ctx;
    for (const task of await this.pendingTasksFor(siteId)) sessions.send(siteId, task);
    const waiting = await db.prisma.study.findMany({ where: { status: 'running' } });
    for (const study of waiting) await locks.run(study.id, () => this.openNextRound(study.id));
  }
}

/**
 * The round's cohort: every eligible site, or, when the study sets a target below that, the target number of them
 * ranked by a hash of study, round and site: deterministic (a restart picks the same) yet different each round.
 */
export function chooseCohort(studyId: string, round: number, eligible: string[], target: number | undefined): string[] {
  if (target === undefined || eligible.length <= target) return [...eligible].sort();
  const rank = (siteId: string) => createHash('sha256').update(`${studyId}\n${round}\n${siteId}`).digest('hex');
  return eligible
    .map((siteId) => ({ siteId, rank: rank(siteId) }))
    .sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0))
    .slice(0, target)
    .map((x) => x.siteId)
    .sort();
}
