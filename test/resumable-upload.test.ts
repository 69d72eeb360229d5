import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { initialWeights, sha256Hex, type federation, type ModelSpec } from '@federa/shared';
import type { RunningCoordinator } from '@federa/coordinator';
import { CoordinatorRefusal, FederationClient } from '@federa/site-agent';
import { coordinatorWithRawSites, dataChunk, fetchModel, headerChunk, plainUpdate, RawSite, rest, studyBody, trailerChunk } from './support/raw-site.js';
import { TcpProxy } from './support/tcp-proxy.js';

// About 174k parameters: a 700 KB plaintext update, sent in several parts below.
const spec: ModelSpec = { architecture: 'resnet', inputSize: 64, channels: 1, classes: 2, seed: 21 };

/** The header of a resumable upload of `bytes` for a task's round, resuming at `offset`. */
function resumableHeader(studyId: string, task: federation.TrainTask, bytes: Uint8Array, offset: number): federation.UpdateHeader {
  return {
    studyId,
    round: 1,
    encoding: task.encoding,
    totalBytes: bytes.byteLength,
    vectorLength: bytes.byteLength / 4,
    baseModelSha256: task.baseModel?.sha256 ?? '',
    sha256: sha256Hex(bytes),
    offset,
  };
}

/** An upload that breaks off resumes from the bytes the coordinator holds, and only the declared bytes count. */
describe('resumable uploads', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  async function roundWithTwoSites(): Promise<{ coordinator: RunningCoordinator; dir: string; studyId: string; tasks: federation.TrainTask[]; sites: RawSite[] }> {
    const dir = await mkdtemp(join(tmpdir(), 'federa-resume-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const { coordinator, sites, inboxes } = await coordinatorWithRawSites({ dataDir: dir, reconnectGraceSeconds: 3600 }, ['site-a', 'site-b'], cleanup);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 2, aggregation: 'plaintext', roundTimeoutSeconds: 600 }));
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const tasks: federation.TrainTask[] = [];
    for (const inbox of inboxes) {
      const task = await inbox.next();
      if (task.kind?.$case !== 'train') throw new Error('expected a train task');
      tasks.push(task.kind.value);
    }
    return { coordinator, dir, studyId, tasks, sites };
  }

  it('keeps the bytes of a cancelled upload, says how many on QueryUpload, and counts the update resumed from there', async () => {
    const { coordinator, dir, studyId, tasks, sites } = await roundWithTwoSites();
    const [a, b] = sites as [RawSite, RawSite];
    const bytesA = plainUpdate(spec, tasks[0]!.cohort, 'site-a', 0.01, 30);
    const sha256 = sha256Hex(bytesA);
    const header = (offset: number) => resumableHeader(studyId, tasks[0]!, bytesA, offset);
    const query = { studyId, round: 1, sha256, totalBytes: bytesA.byteLength };
    expect((await a.queryUpload(query)).progress?.receivedBytes).toBe(0);

    const half = 300_000;
    await a.uploadCancelled([headerChunk(header(0)), dataChunk(bytesA.subarray(0, 100_000)), dataChunk(bytesA.subarray(100_000, half))]);
    await expect.poll(async () => (await a.queryUpload(query)).progress?.receivedBytes).toBe(half);
    // Another site asking about the same hash holds nothing: partials are per site.
    expect((await b.queryUpload(query)).progress?.receivedBytes).toBe(0);

    // Resuming from anything but what is held is refused, naming what is held.
    const wrong = await a.upload([headerChunk(header(1000)), dataChunk(bytesA.subarray(1000)), trailerChunk(bytesA)]);
    expect(status[wrong.error?.code ?? 0]).toBe('FAILED_PRECONDITION');
    expect(wrong.error?.details).toMatch(/holds 300000 bytes of this update, not 1000/);

    const resumed = await a.upload([headerChunk(header(half)), dataChunk(bytesA.subarray(half)), trailerChunk(bytesA)]);
    expect(resumed.receipt?.sha256).toBe(sha256);
    expect(resumed.receipt?.receivedBytes).toBe(bytesA.byteLength);

    const bytesB = plainUpdate(spec, tasks[1]!.cohort, 'site-b', 0.05, 10);
    const headerB = { ...header(0), sha256: sha256Hex(bytesB) };
    expect((await b.upload([headerChunk(headerB), dataChunk(bytesB), trailerChunk(bytesB)])).receipt).toBeDefined();
    await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status, { timeout: 30_000 }).toBe('completed');
    const model = await fetchModel(coordinator, studyId, 1);
    const base = initialWeights(spec);
    // (30 * 0.01 + 10 * 0.05) / 40 = 0.02: the resumed update counted whole, once.
    expect(base.reduce((m, w, i) => Math.max(m, Math.abs((model[i] as number) - (w + 0.02))), 0)).toBeLessThan(1e-6);
    // The round ended: no partial is kept for it.
    await expect.poll(async () => readdir(join(dir, 'blobs', 'partial', studyId)).catch(() => [])).toEqual([]);
  });

  it('drops a resumed upload whose bytes are not the declared ones, so the site starts over', async () => {
    const { studyId, tasks, sites } = await roundWithTwoSites();
    const a = sites[0]!;
    const bytes = plainUpdate(spec, tasks[0]!.cohort, 'site-a', 0.01, 30);
    const sha256 = sha256Hex(bytes);
    const header = (offset: number) => resumableHeader(studyId, tasks[0]!, bytes, offset);
    const query = { studyId, round: 1, sha256, totalBytes: bytes.byteLength };
    // The first part sent is not the start of the update it claims to be.
    await a.uploadCancelled([headerChunk(header(0)), dataChunk(new Uint8Array(200_000).fill(9))]);
    await expect.poll(async () => (await a.queryUpload(query)).progress?.receivedBytes).toBe(200_000);
    const refused = await a.upload([headerChunk(header(200_000)), dataChunk(bytes.subarray(200_000)), trailerChunk(bytes)]);
    expect(status[refused.error?.code ?? 0]).toBe('DATA_LOSS');
    expect((await a.queryUpload(query)).progress?.receivedBytes).toBe(0);
    expect((await a.upload([headerChunk(header(0)), dataChunk(bytes), trailerChunk(bytes)])).receipt?.sha256).toBe(sha256);
  });

  it('has the site agent client resume after its connection broke mid-upload, sending only the rest', async () => {
    const { coordinator, studyId, tasks } = await roundWithTwoSites();
    const proxy = await TcpProxy.start('127.0.0.1', coordinator.grpcPort);
    cleanup.push(() => proxy.close());
    // 64 KiB chunks: an interrupted upload resumes after the last whole chunk the coordinator wrote.
    const client = new FederationClient({ address: `127.0.0.1:${proxy.port}`, credentials: credentials.createInsecure(), declaredSiteId: 'site-a', uploadChunkBytes: 64 * 1024 });
    cleanup.push(() => client.close());
    const bytes = plainUpdate(spec, tasks[0]!.cohort, 'site-a', 0.01, 30);
    const header = { studyId, round: 1, encoding: tasks[0]!.encoding, vectorLength: bytes.byteLength / 4, baseModelSha256: tasks[0]!.baseModel?.sha256 ?? '' };
    const query = { studyId, round: 1, sha256: sha256Hex(bytes), totalBytes: bytes.byteLength };
    await client.queryUpload(query);
    // The link stalls after 400 KB, the coordinator writes what reached it, and then the connection breaks.
    proxy.holdAfter(400_000);
    const broken = client.uploadUpdate(header, bytes).catch((error: unknown) => error);
    const direct = new FederationClient({ address: `127.0.0.1:${coordinator.grpcPort}`, credentials: credentials.createInsecure(), declaredSiteId: 'site-a' });
    cleanup.push(() => direct.close());
    let held = -1;
    await expect
      .poll(async () => {
        const now = (await direct.queryUpload(query)).receivedBytes;
        const settled = now === held && now > 100_000;
        held = now;
        return settled;
      }, { timeout: 20_000, interval: 300 })
      .toBe(true);
    proxy.dropConnections();
    expect(await broken).toBeInstanceOf(CoordinatorRefusal);
    expect(status[((await broken) as CoordinatorRefusal).code]).toBe('UNAVAILABLE');
    const before = proxy.sent;
    const receipt = await client.uploadUpdate(header, bytes);
    expect(receipt.sha256).toBe(sha256Hex(bytes));
    expect(receipt.resumedFrom).toBe(held);
    // The second attempt carried the rest of the update, not all of it again.
    expect(proxy.sent - before).toBeLessThan(bytes.byteLength - receipt.resumedFrom + 50_000);
  });
});
