import { randomUUID } from 'node:crypto';
import { federation, type StudyDefinition } from '@federa/shared';
import type { PublishedRound } from './aggregator.js';
import { evaluationBins } from './evaluation.js';
import type { RoundContext } from './round-context.js';
import { evaluateTask, modelRefOf, studyClosedTask, type AggregateMembers, type ModelRow, type StudyRow } from './tasks.js';

interface SummedRound {
  id: string;
  studyId: string;
  number: number;
  assignedSites: string[];
  receipts: Array<{ siteId: string }>;
}

/**
 * Publishing: the round's new global model (or encrypted sum) is recorded with the round's closing in one audited
 * transaction, the sites that made it are asked to evaluate it, and at the last round every site hears the outcome.
 */
export class RoundPublishing {
  constructor(private readonly ctx: RoundContext) {}

  /** Records the published artifact and closes the round; returns whether this was the study's last round. */
  async publish(study: StudyRow, def: StudyDefinition, round: SummedRound, baseParameters: number, published: PublishedRound): Promise<boolean> {
    const { audit, log } = this.ctx;
    const finished = round.number >= study.totalRounds;
    const now = new Date();
    const bins = evaluationBins(def.model.classes);
    const contributors = round.receipts.map((r) => r.siteId).sort();
    await audit.transaction(async (tx) => {
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
          parameterCount: baseParameters,
          keyEpoch: published.keyEpoch ?? null,
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
            details: {
              kind: published.kind,
              sha256: published.model.sha256,
              bytes: published.model.size,
              contributors,
              ...(published.keyEpoch !== undefined ? { keyEpoch: published.keyEpoch } : {}),
            },
          },
          ...(finished ? [{ kind: 'study.completed', actor: 'system', studyId: study.id, details: { rounds: study.totalRounds } }] : []),
        ],
      };
    });
    log.info(
      { studyId: study.id, round: round.number, participants: published.sites, model: published.model.sha256, kind: published.kind },
      'round aggregated; new global model published',
    );
    // Sent before the next train task or StudyClosed: a site scores each model before it moves past it.
    await this.askForEvaluation(study, round.number, bins, contributors);
    if (finished) {
      this.broadcastClosed(round.assignedSites, study.id, federation.StudyOutcome.STUDY_OUTCOME_COMPLETED, `study ${def.name} completed ${study.totalRounds} rounds`, round.number);
    }
    return finished;
  }

  /**
   * How a published model travels: with the round's cohort and the sites summed, which every site checks against its
   * policy (and, for an encrypted aggregate, against the tags and contribution slots it decrypts).
   */
  async modelRef(studyId: string, round: number): Promise<federation.ModelRef> {
    const model = await this.ctx.db.prisma.modelVersion.findUniqueOrThrow({ where: { studyId_round: { studyId, round } } });
    return modelRefOf(studyId, model, await this.membersOf(studyId, model));
  }

  async membersOf(studyId: string, model: ModelRow): Promise<AggregateMembers | null> {
    if (model.round === 0) return null;
    const round = await this.ctx.db.prisma.round.findUniqueOrThrow({
      where: { studyId_number: { studyId, number: model.round } },
      include: { receipts: { select: { siteId: true } } },
    });
    return { cohort: [...round.assignedSites].sort(), contributors: round.receipts.map((r) => r.siteId).sort() };
  }

  /** Tells sites the study ended for them (completed, failed, cancelled, or they were dropped from it). */
  broadcastClosed(siteIds: string[], studyId: string, outcome: federation.StudyOutcome, message: string, finalRound: number): void {
    const task = studyClosedTask(studyId, outcome, message, finalRound);
    for (const siteId of siteIds) this.ctx.sessions.send(siteId, task);
  }

  /** Evaluation is reported, never a gate: failing to send it is logged and left to the replay on reconnection. */
  private async askForEvaluation(study: StudyRow, round: number, bins: number, siteIds: string[]): Promise<void> {
    try {
      const task = evaluateTask(study, round, await this.modelRef(study.id, round), bins);
      for (const siteId of siteIds) this.ctx.sessions.send(siteId, task);
    } catch (error) {
      this.ctx.log.error({ err: error, studyId: study.id, round }, 'could not send the evaluation tasks');
    }
  }
}
