import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { initialWeights, type ModelSpec } from '@federa/shared';
import { isolatedSchema, POSTGRES_URL, postgresReachable } from './postgres.js';
import { coordinatorWithRawSites, fetchModel, plainUpdate, rest, studyBody, wholeUpload } from './support/raw-site.js';
import { TcpProxy } from './support/tcp-proxy.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 12 };
const reachable = await postgresReachable();

/** The database goes away mid-round (connections dropped and refused) and comes back: the round goes on. */
describe.skipIf(!reachable)('a database outage mid-round', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('answers UNAVAILABLE while PostgreSQL is unreachable, so sites retry, and aggregates exactly the accepted updates once it is back', async () => {
    const target = new URL(POSTGRES_URL);
    const proxy = await TcpProxy.start(target.hostname, Number(target.port || 5432));
    cleanup.push(() => proxy.close());
    const schema = await isolatedSchema('outage');
    cleanup.push(() => schema.drop());
    const url = new URL(schema.url);
    url.host = `127.0.0.1:${proxy.port}`;
    const dir = await mkdtemp(join(tmpdir(), 'federa-outage-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const { coordinator, sites, inboxes } = await coordinatorWithRawSites({ dataDir: dir, databaseUrl: url.toString(), reconnectGraceSeconds: 3600 }, ['site-a', 'site-b'], cleanup);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 2, aggregation: 'plaintext', roundTimeoutSeconds: 600 }));
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const uploads = [];
    for (const [i, inbox] of inboxes.entries()) {
      const task = await inbox.next();
      if (task.kind?.$case !== 'train') throw new Error('expected a train task');
      const siteId = i === 0 ? 'site-a' : 'site-b';
      const bytes = plainUpdate(spec, task.kind.value.cohort, siteId, i === 0 ? 0.01 : 0.05, i === 0 ? 30 : 10);
      const header = { studyId, round: 1, encoding: task.kind.value.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.kind.value.baseModel?.sha256 ?? '' };
      uploads.push(wholeUpload(header, bytes));
    }
    expect((await sites[0]!.upload(uploads[0]!)).receipt).toBeDefined();

    proxy.drop();
    const refused = await sites[1]!.upload(uploads[1]!);
    expect(status[refused.error?.code ?? 0]).toBe('UNAVAILABLE');
    expect(refused.error?.details).toMatch(/database is briefly unavailable; try again shortly/);
    const ready = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'failing', database: expect.stringMatching(/database does not answer/) });
    // Not ready, but alive: a service manager has no reason to restart it.
    expect((await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/health`)).status).toBe(200);
    expect(proxy.refused).toBeGreaterThan(0);

    proxy.restore();
    // The same bytes again, as the agent's retry sends them: accepted once, the round closes with both.
    expect((await sites[1]!.upload(uploads[1]!)).receipt).toBeDefined();
    const study = async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body as { status: string; rounds: Array<{ status: string; reportedSites: string[] }> };
    await expect.poll(async () => (await study()).status, { timeout: 30_000 }).toBe('completed');
    expect((await study()).rounds[0]?.reportedSites).toEqual(['site-a', 'site-b']);
    const model = await fetchModel(coordinator, studyId, 1);
    const base = initialWeights(spec);
    // (30 * 0.01 + 10 * 0.05) / 40 = 0.02
    const maxError = base.reduce((m, w, i) => Math.max(m, Math.abs((model[i] as number) - (w + 0.02))), 0);
    expect(maxError).toBeLessThan(1e-6);
  });
});
