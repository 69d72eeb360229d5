import type { Logger } from '@federa/shared';
import type { AuditLog } from '../audit/audit-log.js';
import type { BlobStore, PartialUploads } from '../blobs/index.js';
import type { CoordinatorConfig } from '../config/index.js';
import type { CoordinatorMetrics } from '../metrics/index.js';
import type { Database } from '../persistence/index.js';
import type { SiteSessions } from '../sessions/site-sessions.js';
import type { Aggregator } from './aggregator.js';
import type { RoundSteps } from './round-steps.js';
import type { StudyLocks } from './study-locks.js';

/** What every phase of the round lifecycle works with: the stores, the sites' sessions and the background steps. */
export interface RoundContext {
  readonly db: Database;
  readonly blobs: BlobStore;
  readonly sessions: SiteSessions;
  readonly aggregator: Aggregator;
  readonly audit: AuditLog;
  readonly locks: StudyLocks;
  readonly partials: PartialUploads;
  readonly config: Pick<CoordinatorConfig, 'reconnectGraceSeconds'>;
  readonly steps: RoundSteps;
  readonly log: Logger;
  readonly metrics: CoordinatorMetrics;
}

/** A round that has not ended: collecting (`open`), being summed (`aggregating`) or key-switched (`switching`, multiparty). */
export interface OpenRound {
  id: string;
  studyId: string;
  number: number;
  status: string;
  deadlineAt: Date | null;
  assignedSites: string[];
  extensions: number;
}

/** Study states in which a round may be in progress (a paused study finishes the round it has). */
export const ACTIVE_STUDY = ['running', 'paused'] as const;

export async function findOpenRound(db: Database, studyId: string): Promise<OpenRound | null> {
  return db.prisma.round.findFirst({ where: { studyId, status: { in: ['open', 'aggregating', 'switching'] } } });
}

/** Timer names: one deadline per round, one grace wait per site and round, one aggregation retry per round. */
export const timerKey = {
  deadline: (roundId: string) => `deadline:${roundId}`,
  grace: (siteId: string, roundId: string) => `grace:${siteId}:${roundId}`,
  graceOf: (siteId: string) => `grace:${siteId}:`,
  aggregationRetry: (roundId: string) => `aggregate:${roundId}`,
  redoLater: (roundId: string, lost: readonly string[]) => `redo:${roundId}:${[...lost].sort().join(',')}`,
};
