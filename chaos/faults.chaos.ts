import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TcpProxy } from '../test/support/tcp-proxy.js';
import { ChaosConsortium, type StudyRow } from './harness.js';

/**
 * Faults injected into real processes (coordinator and sites as separate processes, mutual TLS, CKKS): SIGKILL at
 * every phase of a round, a database whose connections are killed, a blob store that stops taking writes, a stalled
 * client. After each, the study must end (completed, or failed with a reason that says why) and every published sum
 * must be exactly the accepted updates' sum (checked by decrypting what the sites kept of what they sent).
 */
const SITES = ['site-a', 'site-b', 'site-c'];
const FAST = ['--reconnect-grace', '5', '--site-away', '30'];
const DATABASE_URL = process.env.FEDERA_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';
const table: Array<{ fault: string; outcome: string; seconds: number }> = [];

describe('fault injection', () => {
  let consortium: ChaosConsortium | undefined;
  let began = 0;

  afterEach(async () => {
    await consortium?.close();
    consortium = undefined;
  });

  afterAll(async () => {
    const out = resolve(dirname(fileURLToPath(import.meta.url)), '../bench/results/chaos.json');
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify({ faults: table }, null, 2)}\n`);
    process.stderr.write(`\n${table.map((r) => `${r.fault.padEnd(62)} ${r.outcome} (${r.seconds} s)`).join('\n')}\n`);
  });

  async function consortiumOf(options: { databaseUrl?: string } = {}): Promise<ChaosConsortium> {
    began = Date.now();
    consortium = await ChaosConsortium.create(SITES, { coordinatorArgs: FAST, ...options });
    await consortium.startCoordinator();
    for (const site of SITES) await consortium.startSite(site);
    return consortium;
  }

  /** The study's end, checked, and recorded in the fault table. */
  async function outcome(fault: string, c: ChaosConsortium, studyId: string): Promise<{ study: StudyRow; rounds: Array<{ round: number; contributors: string[] }> }> {
    const study = await c.finished(studyId);
    const rounds = await c.verifyFedAvg(studyId);
    const summary =
      study.status === 'completed'
        ? `completed; ${rounds.map((r) => `round ${r.round}: FedAvg of ${r.contributors.join('+')}`).join('; ')}; sums exact`
        : `${study.status}: ${study.error}`;
    table.push({ fault, outcome: summary, seconds: Math.round((Date.now() - began) / 1000) });
    if (process.env.CHAOS_DEBUG) process.stderr.write(`DEBUG ${fault}: ${summary}\n${JSON.stringify(study.rounds.map((r) => ({ n: r.number, a: r.assignedSites, f: r.failures })))}\n`);
    return { study, rounds };
  }

  const everyone = [
    { round: 1, contributors: SITES },
    { round: 2, contributors: SITES },
  ];

  /** Kills the coordinator where it stalls at `failpoint`, starts it again, and expects the study to finish whole. */
  async function killCoordinatorAt(failpoint: string, phase: string) {
    const c = await consortiumOf();
    await c.coordinator!.stop();
    await c.startCoordinator(failpoint);
    // Every round waits for all three sites: after the restart, none may be left out for reconnecting late.
    const studyId = await c.startStudy({ minSites: 3 });
    await c.coordinator!.waitFor(/"failpoint reached"/, 120_000);
    await c.coordinator!.kill9();
    const restarted = Date.now();
    await c.startCoordinator();
    const { study, rounds } = await outcome(`coordinator SIGKILL ${phase}`, c, studyId);
    expect(study.status).toBe('completed');
    expect(rounds).toEqual(everyone);
    return { c, studyId, restarted };
  }

  it('kills the coordinator at task dispatch: the restarted coordinator sends the open round again', async () => {
    await killCoordinatorAt('round.dispatch=stall', 'at task dispatch (round opened, no task sent)');
  });

  it('kills the coordinator mid-upload: the site resumes its upload from the bytes held', async () => {
    const { c } = await killCoordinatorAt('upload.mid-stream=stall', 'mid-upload (first chunk on disk)');
    const resumed = await Promise.any([...c.sites.values()].map((site) => site.waitFor(/"event":"upload".*"resumedFrom":[1-9]/, 1_000)));
    expect(resumed).toMatch(/"round":1/);
  });

  it('kills the coordinator right after the last upload was recorded: the round closes at start-up, not at its deadline', async () => {
    const { c, studyId, restarted } = await killCoordinatorAt('upload.recorded=stall@3', 'after the last upload of round 1 was recorded');
    const audit = await c.api<{ records: Array<{ kind: string; round: number | null; time?: string; at?: string }> }>(
      'GET',
      `/audit/records?studyId=${studyId}&kind=round.closed&limit=10`,
      undefined,
      'auditor',
    );
    expect(audit.records.length).toBe(2);
    // Closed within seconds of the restart; the round's deadline was two minutes away.
    expect(Date.now() - restarted).toBeLessThan(100_000);
  });

  it('kills the coordinator mid-aggregation: the restarted coordinator finishes the aggregation from the stored updates', async () => {
    await killCoordinatorAt('round.aggregate=stall', 'mid-aggregation (round marked aggregating)');
  });

  it('kills the coordinator mid-publish: the sum is published once', async () => {
    const { c, studyId } = await killCoordinatorAt('round.publish=stall', 'mid-publish (sum stored, round not closed)');
    const published = await c.api<{ records: Array<{ round: number }> }>('GET', `/audit/records?studyId=${studyId}&kind=aggregate.published&limit=10`, undefined, 'auditor');
    expect(published.records.map((r) => r.round)).toEqual([1, 2]);
  });

  it('kills a site mid-training and never restarts it: the round stops waiting after the grace period and closes without it', async () => {
    const c = await consortiumOf();
    await c.sites.get('site-c')!.stop();
    await c.startSite('site-c', { failpoints: 'site.train=stall' });
    const studyId = await c.startStudy();
    await c.sites.get('site-c')!.waitFor(/"failpoint reached"/);
    await c.sites.get('site-c')!.kill9();
    const { study, rounds } = await outcome('site SIGKILL mid-training, not restarted', c, studyId);
    expect(study.status).toBe('completed');
    expect(rounds).toEqual([
      { round: 1, contributors: ['site-a', 'site-b'] },
      { round: 2, contributors: ['site-a', 'site-b'] },
    ]);
    expect(study.rounds[0]!.failures).toEqual([expect.objectContaining({ siteId: 'site-c', reason: 'disconnected' })]);
  });

  for (const [failpoint, phase] of [
    ['site.upload=stall', 'mid-upload'],
    ['site.download=stall@2', 'mid-download of the round-1 model'],
  ] as const) {
    it(`kills a site ${phase} and restarts it: it picks its task up again and the round counts it once`, async () => {
      const c = await consortiumOf();
      await c.sites.get('site-b')!.stop();
      await c.startSite('site-b', { failpoints: failpoint });
      const studyId = await c.startStudy({ minSites: 3 });
      await c.sites.get('site-b')!.waitFor(/"failpoint reached"/, 120_000);
      await c.sites.get('site-b')!.kill9();
      await c.startSite('site-b');
      const { study, rounds } = await outcome(`site SIGKILL ${phase}, restarted`, c, studyId);
      expect(study.status).toBe('completed');
      expect(rounds).toEqual(everyone);
    });
  }

  it('terminates every PostgreSQL connection of the coordinator mid-round: the round goes on', async () => {
    const schema = `chaos_${Date.now()}`;
    const c = await consortiumOf({ databaseUrl: `${DATABASE_URL}?schema=${schema}` });
    const admin = new pg.Client({ connectionString: DATABASE_URL });
    await admin.connect();
    try {
      const studyId = await c.startStudy();
      await c.coordinator!.waitFor(/"update received"/, 120_000);
      const killed = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'federa-coordinator' AND pid <> pg_backend_pid()",
      );
      expect(killed.rowCount).toBeGreaterThan(0);
      const { study, rounds } = await outcome(`PostgreSQL: ${killed.rowCount} coordinator connections terminated mid-round`, c, studyId);
      expect(study.status).toBe('completed');
      expect(rounds).toEqual(everyone);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
      await admin.end();
    }
  });

  it('makes the blob store refuse writes during the uploads: sites retry, and the round completes once it takes them again', async () => {
    const c = await consortiumOf();
    // The folder where uploads land is replaced by a file: every write there fails (even for root).
    const partial = join(c.dataDir, 'blobs', 'partial');
    await rm(partial, { recursive: true, force: true });
    await mkdir(dirname(partial), { recursive: true });
    await writeFile(partial, 'not a folder');
    const studyId = await c.startStudy();
    // Each site's upload is refused while the store is broken, and the site says it will try again.
    for (const site of SITES) await c.sites.get(site)!.waitFor(/"what":"update".*could not take it now; trying again/, 60_000);
    await new Promise((r) => setTimeout(r, 3_000));
    await rm(partial);
    const { study, rounds } = await outcome('blob store refuses writes while sites upload (3 s)', c, studyId);
    expect(study.status).toBe('completed');
    expect(rounds).toEqual(everyone);
  });

  it('stalls one site mid-upload (its connection open, nothing arriving): the others finish each round at its deadline', async () => {
    const c = await consortiumOf();
    const proxy = await TcpProxy.start('127.0.0.1', c.grpcPort);
    try {
      await c.sites.get('site-c')!.stop();
      await c.startSite('site-c', { address: `127.0.0.1:${proxy.port}` });
      // The connection carries registration, the task stream and heartbeats first; the upload is what comes after.
      proxy.holdAfter(60_000);
      const studyId = await c.startStudy({ roundTimeoutSeconds: 15 });
      const { study, rounds } = await outcome('one site stalled mid-stream (connection open, nothing arriving)', c, studyId);
      expect(study.status).toBe('completed');
      expect(rounds[0]!.contributors).toEqual(['site-a', 'site-b']);
    } finally {
      await proxy.close();
    }
  });
});
