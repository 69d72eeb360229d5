import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { DATABASE } from '../app/tokens.js';
import { Prisma, type Database } from '../persistence/index.js';

/** The latest refusal or failure of a site, as the site health table shows it. */
export interface SiteIncidentView {
  studyId: string;
  round: number;
  /** train or evaluate; null for a round failure (always of a training task). */
  task: string | null;
  reason: string;
  message: string;
  at: string;
}

/** What a site has done in rounds: how often it was asked, what it sent, how long it took, what it refused. */
export interface SiteActivityView {
  siteId: string;
  /** Rounds the site was assigned to (the cohorts it was asked to train in). */
  roundsAssigned: number;
  /** Accepted model updates (one per round at most). */
  updates: number;
  /** Bytes of every accepted update together (encrypted updates are several times the model's size). */
  bytesSent: number;
  lastUpdateAt: string | null;
  /** Seconds from a round opening to this site's update arriving: training plus upload. Null before any update. */
  roundSeconds: { mean: number; median: number; max: number; last: number; lastStudyId: string; lastRound: number } | null;
  refusals: { count: number; last: SiteIncidentView | null };
  failures: { count: number; last: SiteIncidentView | null };
}

export interface SiteActivity {
  /** The study the figures are limited to, or null for every study. */
  studyId: string | null;
  sites: SiteActivityView[];
}

// Raw rows are checked like any other outside input: the SQL's column types are a contract the schema could break.
const timestamp = z.coerce.date();
const receiptRow = z.object({
  siteId: z.string(),
  updates: z.number(),
  bytes: z.number(),
  lastAt: timestamp,
  meanSeconds: z.number(),
  medianSeconds: z.number(),
  maxSeconds: z.number(),
});
const lastReceiptRow = z.object({ siteId: z.string(), studyId: z.string(), round: z.number(), seconds: z.number() });
const countRow = z.object({ siteId: z.string(), count: z.number() });
const incidentRow = z.object({
  siteId: z.string(),
  studyId: z.string(),
  round: z.number(),
  task: z.string().nullable(),
  reason: z.string(),
  message: z.string(),
  at: timestamp,
});

/**
 * Read-only figures per site for the site health table, computed in the database (aggregates over every receipt,
 * refusal and failure), so the answer stays small however long the consortium has run.
 */
@Injectable()
export class SiteActivityService {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async activity(studyId: string | null = null): Promise<SiteActivity> {
    const prisma = this.db.prisma;
    const inRound = studyId === null ? Prisma.empty : Prisma.sql`WHERE r.study_id = ${studyId}`;
    const inStudy = studyId === null ? Prisma.empty : Prisma.sql`WHERE x.study_id = ${studyId}`;
    const seconds = Prisma.sql`extract(epoch FROM (u.received_at - r.opened_at))::float8`;
    const [sites, receipts, lastReceipts, assigned, refusalCounts, lastRefusals, failureCounts, lastFailures] = await Promise.all([
      prisma.site.findMany({ select: { id: true }, orderBy: { id: 'asc' } }),
      prisma.$queryRaw<unknown[]>`
        SELECT u.site_id AS "siteId", count(*)::int AS updates, coalesce(sum(u.size_bytes), 0)::float8 AS bytes,
               max(u.received_at) AS "lastAt", avg(${seconds})::float8 AS "meanSeconds",
               (percentile_cont(0.5) WITHIN GROUP (ORDER BY ${seconds}))::float8 AS "medianSeconds", max(${seconds})::float8 AS "maxSeconds"
        FROM update_receipt u JOIN round r ON r.id = u.round_id ${inRound} GROUP BY u.site_id`,
      prisma.$queryRaw<unknown[]>`
        SELECT DISTINCT ON (u.site_id) u.site_id AS "siteId", r.study_id AS "studyId", r.number AS round, ${seconds} AS seconds
        FROM update_receipt u JOIN round r ON r.id = u.round_id ${inRound} ORDER BY u.site_id, u.received_at DESC`,
      prisma.$queryRaw<unknown[]>`
        SELECT a.site_id AS "siteId", count(*)::int AS count FROM round r, unnest(r.assigned_sites) AS a(site_id) ${inRound} GROUP BY a.site_id`,
      prisma.$queryRaw<unknown[]>`SELECT x.site_id AS "siteId", count(*)::int AS count FROM site_refusal x ${inStudy} GROUP BY x.site_id`,
      prisma.$queryRaw<unknown[]>`
        SELECT DISTINCT ON (x.site_id) x.site_id AS "siteId", x.study_id AS "studyId", x.round, x.task, x.reason, x.message, x.reported_at AS at
        FROM site_refusal x ${inStudy} ORDER BY x.site_id, x.reported_at DESC`,
      prisma.$queryRaw<unknown[]>`
        SELECT f.site_id AS "siteId", count(*)::int AS count FROM round_failure f JOIN round r ON r.id = f.round_id ${inRound} GROUP BY f.site_id`,
      prisma.$queryRaw<unknown[]>`
        SELECT DISTINCT ON (f.site_id) f.site_id AS "siteId", r.study_id AS "studyId", r.number AS round, NULL::text AS task, f.reason, f.message,
               f.reported_at AS at
        FROM round_failure f JOIN round r ON r.id = f.round_id ${inRound} ORDER BY f.site_id, f.reported_at DESC`,
    ]);
    const bySite = <T extends { siteId: string }>(rows: unknown[], schema: z.ZodType<T>): Map<string, T> =>
      new Map(rows.map((row) => schema.parse(row)).map((row) => [row.siteId, row]));
    const receiptOf = bySite(receipts, receiptRow);
    const lastReceiptOf = bySite(lastReceipts, lastReceiptRow);
    const assignedOf = bySite(assigned, countRow);
    const refusalCountOf = bySite(refusalCounts, countRow);
    const lastRefusalOf = bySite(lastRefusals, incidentRow);
    const failureCountOf = bySite(failureCounts, countRow);
    const lastFailureOf = bySite(lastFailures, incidentRow);

    // For one study, only the sites that took part in it; overall, every registered site (with zeros if idle).
    const ids = new Set(studyId === null ? sites.map((s) => s.id) : []);
    for (const map of [receiptOf, assignedOf, refusalCountOf, failureCountOf]) for (const id of map.keys()) ids.add(id);
    return {
      studyId,
      sites: [...ids].sort().map((siteId) => {
        const receipt = receiptOf.get(siteId);
        const last = lastReceiptOf.get(siteId);
        return {
          siteId,
          roundsAssigned: assignedOf.get(siteId)?.count ?? 0,
          updates: receipt?.updates ?? 0,
          bytesSent: receipt?.bytes ?? 0,
          lastUpdateAt: receipt?.lastAt.toISOString() ?? null,
          roundSeconds:
            receipt && last
              ? { mean: receipt.meanSeconds, median: receipt.medianSeconds, max: receipt.maxSeconds, last: last.seconds, lastStudyId: last.studyId, lastRound: last.round }
              : null,
          refusals: { count: refusalCountOf.get(siteId)?.count ?? 0, last: incidentOf(lastRefusalOf.get(siteId)) },
          failures: { count: failureCountOf.get(siteId)?.count ?? 0, last: incidentOf(lastFailureOf.get(siteId)) },
        };
      }),
    };
  }
}

function incidentOf(row: z.infer<typeof incidentRow> | undefined): SiteIncidentView | null {
  if (!row) return null;
  return { studyId: row.studyId, round: row.round, task: row.task, reason: row.reason, message: row.message, at: row.at.toISOString() };
}
