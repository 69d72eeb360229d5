import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@federa/shared';
import { openDatabase, type Database } from '../persistence/index.js';
import { isolatedSchema, postgresReachable, POSTGRES_URL } from '../../../test/postgres.js';
import { SiteActivityService } from './site-activity.js';

const T0 = new Date('2026-01-01T10:00:00.000Z');
const at = (seconds: number): Date => new Date(T0.getTime() + seconds * 1000);

/**
 * The site health figures, computed in SQL from the tables the federation service writes: made-up rows with known
 * times and sizes, and the figures they must give, overall and for one study.
 */
const postgres = await postgresReachable();
if (!postgres) process.stderr.write(`[site-activity] skipping the PostgreSQL run: ${POSTGRES_URL} is unreachable\n`);

// The figures are SQL (percentiles, DISTINCT ON): run on both databases a coordinator may use.
describe.each([{ backend: 'pglite' }, ...(postgres ? [{ backend: 'postgresql' }] : [])])('SiteActivityService ($backend)', ({ backend }) => {
  let dir: string;
  let db: Database;
  let service: SiteActivityService;
  let dropSchema: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-site-activity-'));
    let databaseUrl: string | undefined;
    if (backend === 'postgresql') {
      const schema = await isolatedSchema('site_activity');
      databaseUrl = schema.url;
      dropSchema = schema.drop;
    }
    db = await openDatabase({ dataDir: dir, databaseUrl }, { logger: createLogger('test', { level: 'silent' }) });
    service = new SiteActivityService(db);
    const p = db.prisma;
    for (const id of ['site-a', 'site-b', 'site-c', 'site-idle']) await p.site.create({ data: { id } });
    const spec = { name: 'x' };
    await p.study.create({ data: { id: 'study-1', name: 'one', spec, specHash: 'h1', totalRounds: 2, status: 'completed' } });
    await p.study.create({ data: { id: 'study-2', name: 'two', spec, specHash: 'h2', totalRounds: 1, status: 'failed' } });
    const round = (id: string, studyId: string, number: number, opened: number, assignedSites: string[]) =>
      p.round.create({ data: { id, studyId, number, openedAt: at(opened), closedAt: at(opened + 100), status: 'closed', assignedSites } });
    await round('r1', 'study-1', 1, 0, ['site-a', 'site-b']);
    await round('r2', 'study-1', 2, 1000, ['site-a', 'site-b']);
    await round('r3', 'study-2', 1, 5000, ['site-a', 'site-b', 'site-c']);
    const receipt = (roundId: string, siteId: string, sizeBytes: number, after: number, opened: number) =>
      p.updateReceipt.create({ data: { roundId, siteId, sha256: `${roundId}${siteId}`, sizeBytes, encoding: 'ckks', receivedAt: at(opened + after) } });
    await receipt('r1', 'site-a', 1000, 10, 0);
    await receipt('r2', 'site-a', 1000, 30, 1000);
    await receipt('r3', 'site-a', 2000, 20, 5000);
    await receipt('r1', 'site-b', 500, 40, 0);
    await receipt('r2', 'site-b', 500, 60, 1000);
    await p.siteRefusal.create({ data: { studyId: 'study-2', round: 1, siteId: 'site-c', task: 'train', reason: 'not-approved', message: 'no approval', studyHash: 'h2', reportedAt: at(5001) } });
    await p.siteRefusal.create({ data: { studyId: 'study-1', round: 2, siteId: 'site-c', task: 'evaluate', reason: 'metrics-not-shared', message: 'policy', studyHash: 'h1', reportedAt: at(1001) } });
    await p.roundFailure.create({ data: { roundId: 'r3', siteId: 'site-b', reason: 'diverged', message: 'loss is NaN', reportedAt: at(5050) } });
  });

  afterAll(async () => {
    await db?.close();
    await dropSchema?.();
    await rm(dir, { recursive: true, force: true });
  });

  it('adds up every study: updates, bytes, round times, refusals and failures per site, idle sites with zeros', async () => {
    const { studyId, sites } = await service.activity();
    expect(studyId).toBeNull();
    expect(sites.map((s) => s.siteId)).toEqual(['site-a', 'site-b', 'site-c', 'site-idle']);
    const [a, b, c, idle] = sites;
    expect(a).toMatchObject({ roundsAssigned: 3, updates: 3, bytesSent: 4000, lastUpdateAt: at(5020).toISOString() });
    expect(a!.roundSeconds).toEqual({ mean: 20, median: 20, max: 30, last: 20, lastStudyId: 'study-2', lastRound: 1 });
    expect(a!.refusals).toEqual({ count: 0, last: null });
    expect(b).toMatchObject({ roundsAssigned: 3, updates: 2, bytesSent: 1000 });
    expect(b!.roundSeconds).toEqual({ mean: 50, median: 50, max: 60, last: 60, lastStudyId: 'study-1', lastRound: 2 });
    expect(b!.failures).toEqual({
      count: 1,
      last: { studyId: 'study-2', round: 1, task: null, reason: 'diverged', message: 'loss is NaN', at: at(5050).toISOString() },
    });
    expect(c).toMatchObject({ roundsAssigned: 1, updates: 0, bytesSent: 0, lastUpdateAt: null, roundSeconds: null });
    // The newest refusal is the one shown, whatever its study.
    expect(c!.refusals).toEqual({
      count: 2,
      last: { studyId: 'study-2', round: 1, task: 'train', reason: 'not-approved', message: 'no approval', at: at(5001).toISOString() },
    });
    expect(idle).toEqual({
      siteId: 'site-idle',
      roundsAssigned: 0,
      updates: 0,
      bytesSent: 0,
      lastUpdateAt: null,
      roundSeconds: null,
      refusals: { count: 0, last: null },
      failures: { count: 0, last: null },
    });
  });

  it('limits the figures to one study, listing only the sites that took part in it', async () => {
    const { studyId, sites } = await service.activity('study-1');
    expect(studyId).toBe('study-1');
    expect(sites.map((s) => s.siteId)).toEqual(['site-a', 'site-b', 'site-c']);
    const [a, b, c] = sites;
    expect(a).toMatchObject({ roundsAssigned: 2, updates: 2, bytesSent: 2000, roundSeconds: { mean: 20, median: 20, max: 30, last: 30, lastRound: 2 } });
    expect(b).toMatchObject({ updates: 2, failures: { count: 0, last: null } });
    expect(c).toMatchObject({ roundsAssigned: 0, updates: 0, refusals: { count: 1, last: { reason: 'metrics-not-shared', task: 'evaluate' } } });
    expect((await service.activity('no-such-study')).sites).toEqual([]);
  });
});
