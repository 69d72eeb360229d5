import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelSpec } from '@federa/shared';
import { coordinatorWithRawSites, plainUpdate, rest, studyBody, wholeUpload } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 8 };

/** Faults of the coordinator's own storage: a round waits them out and finishes once they are fixed, no restart. */
describe('a blob store that stops taking writes during aggregation', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('keeps the round aggregating with the error on the study and /ready failing, and finishes once it is writable again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-faults-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const { coordinator, sites, inboxes } = await coordinatorWithRawSites({ dataDir: dir, reconnectGraceSeconds: 3600 }, ['site-a', 'site-b'], cleanup);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 1, aggregation: 'plaintext', roundTimeoutSeconds: 5 }));
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const task = await inboxes[0]!.next();
    if (task.kind?.$case !== 'train') throw new Error('expected a train task');
    const bytes = plainUpdate(spec, task.kind.value.cohort, 'site-a', 0.01, 5);
    const header = { studyId, round: 1, encoding: task.kind.value.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.kind.value.baseModel?.sha256 ?? '' };
    expect((await sites[0]!.upload(wholeUpload(header, bytes))).receipt).toBeDefined();

    // The blob store's working folder becomes unusable (a file where the folder was: fails even for root).
    const tmp = join(dir, 'blobs', 'tmp');
    await rm(tmp, { recursive: true, force: true });
    await writeFile(tmp, 'in the way');
    const study = async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body as { status: string; error: string | null; rounds: Array<{ status: string }> };
    // site-b never answers: at the deadline the round aggregates with site-a, and that fails.
    await expect.poll(async () => (await study()).error, { timeout: 20_000 }).toMatch(/aggregating round 1 failed .* retrying in \d+ s/);
    expect((await study()).rounds[0]?.status).toBe('aggregating');
    expect((await study()).status).toBe('running');
    const unready = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/ready`);
    expect(unready.status).toBe(503);
    expect(await unready.json()).toMatchObject({ status: 'failing', database: 'ok', blobStore: expect.stringMatching(/not writable/) });
    // Liveness checks nothing but the process: it stays 200.
    expect((await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/health`)).status).toBe(200);

    await rm(tmp);
    await expect.poll(async () => (await study()).rounds[0]?.status, { timeout: 30_000 }).toBe('closed');
    expect((await study()).error).toBeNull();
    expect((await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/ready`)).status).toBe(200);
  });
});
