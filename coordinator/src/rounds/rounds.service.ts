import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { createLogger, type federation } from '@federa/shared';
import { BLOB_STORE, COORDINATOR_CONFIG, DATABASE } from '../app/tokens.js';
import type { CoordinatorConfig } from '../config/index.js';
import { AuditLog } from '../audit/audit-log.js';
import { PartialUploads, type BlobStore } from '../blobs/index.js';
import { CoordinatorMetrics } from '../metrics/index.js';
import type { Database } from '../persistence/index.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { Aggregator } from './aggregator.js';
import { ACTIVE_STUDY, findOpenRound, type RoundContext } from './round-context.js';
import { RoundClosing } from './round-close.js';
import { RoundCollection } from './round-collect.js';
import { RoundOpening } from './round-open.js';
import { RoundPublishing } from './round-publish.js';
import { RoundSteps } from './round-steps.js';
import { StudyControl } from './study-control.js';
import { StudyLocks } from './study-locks.js';
import { KeyEpochs } from '../multiparty/index.js';
import { RoundSwitching } from './round-switch.js';
import type { AggregateMembers, ModelRow } from './tasks.js';

/**
 * Runs every started study by itself, through the phases of a round: open (round-open.ts), collect
 * (round-collect.ts), close and aggregate (round-close.ts), publish (round-publish.ts); evaluation is asked for on
 * publishing and recorded by SiteReports. Uploads arrive through UploadReceiver, other reports through SiteReports;
 * both ask this service to close a round once they have recorded an answer. Researchers and admins steer a study
 * through StudyControl (study-control.ts).
 *
 * All state lives in the database and the blob store, so a restarted coordinator picks up where it was. Work on one
 * study is serialised (StudyLocks) so a late upload cannot race a round's closing. Every step is an audit record.
 */
@Injectable()
export class RoundsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly ctx: RoundContext;
  private readonly publishing: RoundPublishing;
  private readonly closing: RoundClosing;
  private readonly collection: RoundCollection;
  private readonly opening: RoundOpening;
  private readonly control: StudyControl;
  readonly switching: RoundSwitching;

  constructor(
    @Inject(DATABASE) db: Database,
    @Inject(BLOB_STORE) blobs: BlobStore,
    @Inject(SiteSessions) private readonly sessions: SiteSessions,
    @Inject(Aggregator) aggregator: Aggregator,
    @Inject(AuditLog) audit: AuditLog,
    @Inject(StudyLocks) locks: StudyLocks,
    @Inject(COORDINATOR_CONFIG) config: Pick<CoordinatorConfig, 'reconnectGraceSeconds'>,
    @Inject(PartialUploads) partials: PartialUploads,
    @Inject(CoordinatorMetrics) metrics: CoordinatorMetrics,
    @Inject(KeyEpochs) epochs: KeyEpochs,
  ) {
    const log = createLogger('rounds');
    this.ctx = { db, blobs, sessions, aggregator, audit, locks, partials, config, log, metrics, steps: new RoundSteps(locks, log) };
    this.publishing = new RoundPublishing(this.ctx);
    this.switching = new RoundSwitching(this.ctx, epochs, {
      publishSwitched: (roundId, published) => this.closing.publishSwitched(roundId, published),
      failRound: (round, studyId, message) => this.closing.failRound(round, studyId, message),
      armOpenDeadline: (round) => this.collection.armDeadline(round),
      baseRef: (studyId, round) => this.publishing.modelRef(studyId, round),
    });
    this.closing = new RoundClosing(this.ctx, this.publishing, this.switching, (studyId) => this.opening.openNextRound(studyId));
    this.collection = new RoundCollection(this.ctx, this.closing, this.publishing, this.switching);
    this.opening = new RoundOpening(this.ctx, this.collection, this.publishing, this.switching, epochs);
    this.control = new StudyControl(this.ctx, this.opening, this.collection, this.closing, this.publishing, this.switching);
  }

  async onApplicationBootstrap(): Promise<void> {
    const { db, locks, partials, steps } = this.ctx;
    // Sites can connect as soon as the gRPC port is bound, which may be before this runs: those get what they owe
    // here, the rest when they connect (taken in the same tick, so no site is served twice or missed).
    const early = this.sessions.connectedSiteIds();
    for (const siteId of early) steps.run(`site ${siteId} connected before start-up ended`, null, () => this.opening.siteConnected(siteId));
    this.sessions.onConnected((siteId) => {
      this.collection.siteReturned(siteId);
      steps.run(`site ${siteId} connected`, null, () => this.opening.siteConnected(siteId));
    });
    this.sessions.onDisconnected((siteId) => {
      steps.run(`site ${siteId} left`, null, () => this.collection.waitForReturn(siteId));
    });
    // Partial uploads of rounds that ended while the coordinator was down go.
    for (const held of await partials.rounds()) {
      const round = await db.prisma.round.findUnique({ where: { studyId_number: { studyId: held.studyId, number: held.round } } });
      if (round?.status !== 'open') await partials.removeRound(held.studyId, held.round);
    }
    // Resume what a previous run left: re-arm deadlines of open rounds (closing one whose sites all answered just
    // before a crash), finish aggregations, open rounds that were due.
    const active = await db.prisma.study.findMany({ where: { status: { in: [...ACTIVE_STUDY] } } });
    for (const study of active) {
      const open = await findOpenRound(db, study.id);
      if (open) {
        this.collection.armDeadline(open);
        if (open.status === 'open') this.collection.closeRoundSoon(study.id, open.id);
      } else await locks.run(study.id, () => this.opening.openNextRound(study.id));
    }
  }

  onApplicationShutdown(): void {
    this.ctx.steps.stop();
  }

  startStudy(studyId: string, actor: string): Promise<void> {
    return this.control.start(studyId, actor);
  }

  stopStudy(studyId: string, actor: string, reason: string): Promise<void> {
    return this.control.stop(studyId, actor, reason);
  }

  pauseStudy(studyId: string, actor: string, reason: string): Promise<void> {
    return this.control.pause(studyId, actor, reason);
  }

  resumeStudy(studyId: string, actor: string): Promise<void> {
    return this.control.resume(studyId, actor);
  }

  dropSite(studyId: string, siteId: string, actor: string, reason: string): Promise<{ counted: boolean; round: number | null }> {
    return this.control.dropSite(studyId, siteId, actor, reason);
  }

  pendingTasksFor(siteId: string): Promise<federation.Task[]> {
    return this.opening.pendingTasksFor(siteId);
  }

  modelRef(studyId: string, round: number): Promise<federation.ModelRef> {
    return this.publishing.modelRef(studyId, round);
  }

  membersOf(studyId: string, model: ModelRow): Promise<AggregateMembers | null> {
    return this.publishing.membersOf(studyId, model);
  }

  /**
   * A site's certificate was revoked: every multiparty round whose key epoch it is in runs again at once under a new
   * epoch without it, so nothing published from then on is under a key it holds a share of.
   */
  siteRevoked(siteId: string, reason: string): void {
    const { db, locks, steps } = this.ctx;
    steps.run(`site ${siteId} was revoked`, null, async () => {
      const rounds = await db.prisma.round.findMany({ where: { status: { in: ['open', 'aggregating', 'switching'] }, keyEpoch: { not: null }, assignedSites: { has: siteId } } });
      for (const round of rounds) await locks.run(round.studyId, () => this.switching.redo(round.id, [siteId], reason));
    });
  }

  /** Asks for the round to be closed once every assigned site has answered. */
  closeRoundSoon(studyId: string, roundId: string): void {
    this.collection.closeRoundSoon(studyId, roundId);
  }
}
