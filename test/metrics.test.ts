import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelSpec } from '@federa/shared';
import { coordinatorWithRawSites, plainUpdate, rest, studyBody, tokenFor, wholeUpload } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 11 };

/** The value of one sample in Prometheus text format (`name{labels} value`), or undefined when it is not there. */
function sample(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [series, value] = line.split(' ');
    if (series === `${name}${labels ? `{${labels}}` : ''}`) return Number(value);
  }
  return undefined;
}

/** Operations endpoints: liveness, readiness, and Prometheus metrics that move with a real round. */
describe('operations endpoints', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('counts a round, its uploads, a refused upload, bytes and connected sites; /metrics needs an admin or auditor token', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-metrics-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const { coordinator, sites, inboxes } = await coordinatorWithRawSites({ dataDir: dir }, ['site-a', 'site-b'], cleanup);
    const base = `http://127.0.0.1:${coordinator.httpPort}`;

    const live = await fetch(`${base}/api/v1/health`);
    expect(live.status).toBe(200);
    expect(await live.json()).toMatchObject({ status: 'ok', uptimeSeconds: expect.any(Number) });
    const ready = await fetch(`${base}/api/v1/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ok', database: 'ok', blobStore: 'ok' });

    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    expect((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${await tokenFor(coordinator, 'researcher')}` } })).status).toBe(403);
    const scrape = async (): Promise<string> => {
      const response = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${await tokenFor(coordinator, 'auditor')}` } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return response.text();
    };
    const before = await scrape();
    expect(sample(before, 'federa_connected_sites')).toBe(2);
    expect(sample(before, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(before, 'federa_studies', 'status="running"')).toBe(0);

    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 2, aggregation: 'plaintext' }));
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    let totalBytes = 0;
    for (const [i, site] of sites.entries()) {
      const task = await inboxes[i]!.next();
      if (task.kind?.$case !== 'train') throw new Error('expected a train task');
      const siteId = i === 0 ? 'site-a' : 'site-b';
      const bytes = plainUpdate(spec, task.kind.value.cohort, siteId, 0.01 * (i + 1), 5);
      const header = { studyId, round: 1, encoding: task.kind.value.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.kind.value.baseModel?.sha256 ?? '' };
      expect((await site.upload(wholeUpload(header, bytes))).receipt).toBeDefined();
      totalBytes += bytes.byteLength;
      if (i === 0) {
        // The same update again: refused as a duplicate, and counted by its reason.
        expect((await site.upload(wholeUpload(header, bytes))).error?.code).toBe(6);
        totalBytes += bytes.byteLength;
      }
    }
    await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status, { timeout: 20_000 }).toBe('completed');

    const after = await scrape();
    expect(sample(after, 'federa_rounds_total', 'outcome="opened"')).toBe(1);
    expect(sample(after, 'federa_rounds_total', 'outcome="closed"')).toBe(1);
    expect(sample(after, 'federa_rounds_total', 'outcome="failed"')).toBeUndefined();
    expect(sample(after, 'federa_uploads_total', 'outcome="accepted",reason="ok"')).toBe(2);
    expect(sample(after, 'federa_uploads_total', 'outcome="refused",reason="already_exists"')).toBe(1);
    expect(sample(after, 'federa_upload_bytes_received_total')).toBe(totalBytes);
    expect(sample(after, 'federa_connected_sites')).toBe(2);
    expect(sample(after, 'federa_studies', 'status="completed"')).toBe(1);
    for (const phase of ['collect', 'aggregate', 'publish']) {
      expect(sample(after, 'federa_round_phase_seconds_count', `phase="${phase}"`), phase).toBe(1);
    }
    // The admin's token works too.
    expect((await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${await tokenFor(coordinator, 'admin')}` } })).status).toBe(200);
  });
});
