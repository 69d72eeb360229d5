import { randomUUID } from 'node:crypto';
import { federation, float32ToBytes, initialWeights, siteIdSchema } from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { findOpenRound, type RoundContext } from './round-context.js';
import type { RoundClosing } from './round-close.js';
import type { RoundCollection } from './round-collect.js';
import type { RoundOpening } from './round-open.js';
import type { RoundPublishing } from './round-publish.js';
import type { RoundSwitching } from './round-switch.js';
import { definitionOf } from './tasks.js';

/**
 * What researchers and admins do to a study's course: start, stop, pause, resume, and drop a site from it. Each runs
 * under the study's lock and is one audited transaction with the state it changes.
 */
export class StudyControl {
  constructor(
    private readonly ctx: RoundContext,
    private readonly opening: RoundOpening,
    private readonly collection: RoundCollection,
    private readonly closing: RoundClosing,
    private readonly publishing: RoundPublishing,
    private readonly switching: RoundSwitching,
  ) {}

  /** Creates the initial model (round 0) from the study's seed and opens round 1. */
  async start(studyId: string, actor: string): Promise<void> {
    const { blobs, audit, log, locks } = this.ctx;
    await locks.run(studyId, async () => {
      const study = await this.requireStudy(studyId, ['draft'], 'started');
      const weights = initialWeights(definitionOf(study).model);
      const blob = await blobs.put(float32ToBytes(weights));
      await audit.transaction(async (tx) => {
        await tx.modelVersion.create({
          data: { id: randomUUID(), studyId, round: 0, sha256: blob.sha256, sizeBytes: blob.size, parameterCount: weights.length },
        });
        await tx.study.update({ where: { id: studyId }, data: { status: 'running', startedAt: new Date() } });
        return { result: undefined, audit: { kind: 'study.started', actor, studyId, details: { specHash: study.specHash, initialModel: blob.sha256 } } };
      });
      log.info({ studyId, parameters: weights.length, model: blob.sha256 }, 'study started');
      await this.opening.openNextRound(studyId);
    });
  }

  /** Ends a draft, running or paused study: an open round is abandoned (nothing of it is aggregated) and sites are told. */
  async stop(studyId: string, actor: string, reason: string): Promise<void> {
    const { db, audit, log, locks } = this.ctx;
    await locks.run(studyId, async () => {
      const study = await this.requireStudy(studyId, ['draft', 'running', 'paused'], 'stopped');
      const open = await findOpenRound(db, studyId);
      const message = `study stopped by ${actor}: ${reason}`;
      const now = new Date();
      await audit.transaction(async (tx) => {
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
      if (open) {
        this.ctx.metrics.round('cancelled');
        this.closing.roundEnded(open);
      }
      const last = await db.prisma.modelVersion.findFirst({ where: { studyId }, orderBy: { round: 'desc' } });
      const sites = open?.assignedSites ?? (await db.prisma.round.findFirst({ where: { studyId }, orderBy: { number: 'desc' } }))?.assignedSites ?? [];
      this.publishing.broadcastClosed(sites, studyId, federation.StudyOutcome.STUDY_OUTCOME_CANCELLED, message, last?.round ?? 0);
      log.warn({ studyId, actor, reason }, 'study stopped');
    });
  }

  /**
   * Pauses a running study at the round boundary: the round in progress still collects and is published (its sites'
   * work is not thrown away), and no new round opens until the study is resumed.
   */
  async pause(studyId: string, actor: string, reason: string): Promise<void> {
    const { db, audit, log, locks } = this.ctx;
    await locks.run(studyId, async () => {
      const study = await this.requireStudy(studyId, ['running'], 'paused');
      const open = await findOpenRound(db, studyId);
      await audit.transaction(async (tx) => {
        await tx.study.update({ where: { id: studyId }, data: { status: 'paused' } });
        return { result: undefined, audit: { kind: 'study.paused', actor, studyId, details: { reason, round: open?.number ?? study.currentRound, roundInProgress: open !== null } } };
      });
      log.warn({ studyId, actor, reason, roundInProgress: open?.number }, 'study paused');
    });
  }

  /** Resumes a paused study: its next round opens as soon as enough sites are connected. */
  async resume(studyId: string, actor: string): Promise<void> {
    const { audit, log, locks } = this.ctx;
    await locks.run(studyId, async () => {
      const study = await this.requireStudy(studyId, ['paused'], 'resumed');
      await audit.transaction(async (tx) => {
        await tx.study.update({ where: { id: studyId }, data: { status: 'running' } });
        return { result: undefined, audit: { kind: 'study.resumed', actor, studyId, details: { round: study.currentRound } } };
      });
      log.info({ studyId, actor }, 'study resumed');
      await this.opening.openNextRound(studyId);
    });
  }

  /**
   * Drops a site from a running or paused study: it is never assigned to its rounds again, the open round stops
   * waiting for it (an update it already had accepted stays counted, since the encrypted sum cannot take it out), a
   * later upload or report from it is refused, and the site is told the study ended for it.
   */
  async dropSite(studyId: string, siteId: string, actor: string, reason: string): Promise<{ counted: boolean; round: number | null }> {
    const { db, audit, log, locks } = this.ctx;
    if (!siteIdSchema.safeParse(siteId).success) throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `siteId: ${JSON.stringify(siteId.slice(0, 80))} is not a site id`);
    return locks.run(studyId, async () => {
      const study = await this.requireStudy(studyId, ['running', 'paused'], 'changed');
      if (study.droppedSites.includes(siteId)) throw new FederationError(GrpcStatus.ALREADY_EXISTS, `site ${siteId} was already dropped from study ${studyId}`);
      const def = definitionOf(study);
      const assignedEver = await db.prisma.round.count({ where: { studyId, assignedSites: { has: siteId } } });
      if (assignedEver === 0 && !(def.sites ?? []).includes(siteId)) {
        throw new FederationError(GrpcStatus.NOT_FOUND, `site ${siteId} takes no part in study ${studyId}`);
      }
      const open = await db.prisma.round.findFirst({
        where: { studyId, status: { in: ['open', 'aggregating', 'switching'] } },
        include: { receipts: { where: { siteId } }, failures: { where: { siteId } } },
      });
      const counted = (open?.receipts.length ?? 0) > 0;
      // A multiparty round cannot finish without every member of its epoch: it runs again without the dropped site.
      const redo = open !== null && open.keyEpoch !== null && (open.status === 'open' || open.status === 'switching') && open.assignedSites.includes(siteId);
      const stopWaiting = !redo && open !== null && open.status === 'open' && open.assignedSites.includes(siteId) && !counted && open.failures.length === 0;
      const message = `dropped from the study by ${actor}: ${reason}`;
      await audit.transaction(async (tx) => {
        await tx.study.update({ where: { id: studyId }, data: { droppedSites: { push: siteId } } });
        if (stopWaiting) await tx.roundFailure.create({ data: { id: randomUUID(), roundId: open.id, siteId, reason: 'dropped', message } });
        return {
          result: undefined,
          audit: { kind: 'study.site-dropped', actor, studyId, siteId, round: open?.number ?? null, details: { reason, updateCounted: counted } },
        };
      });
      log.warn({ studyId, siteId, actor, reason, round: open?.number, updateCounted: counted }, 'site dropped from the study');
      const last = await db.prisma.modelVersion.findFirst({ where: { studyId }, orderBy: { round: 'desc' } });
      this.publishing.broadcastClosed([siteId], studyId, federation.StudyOutcome.STUDY_OUTCOME_CANCELLED, `site ${siteId} was ${message}`, last?.round ?? 0);
      if (stopWaiting) await this.collection.closeRoundIfComplete(open.id);
      if (redo) await this.switching.redo(open.id, [siteId], message);
      return { counted, round: open?.number ?? null };
    });
  }

  private async requireStudy(studyId: string, allowed: string[], verb: string) {
    const study = await this.ctx.db.prisma.study.findUnique({ where: { id: studyId } });
    if (!study) throw new FederationError(GrpcStatus.NOT_FOUND, `study ${studyId} does not exist`);
    if (!allowed.includes(study.status)) {
      throw new FederationError(GrpcStatus.FAILED_PRECONDITION, `study ${studyId} is ${study.status}; only a ${allowed.join(' or ')} study can be ${verb}`);
    }
    return study;
  }
}
