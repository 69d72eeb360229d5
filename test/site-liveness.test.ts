import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { federation, type ModelSpec } from '@federa/shared';
import { openDatabase, parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { BlobStore } from '../coordinator/src/blobs/index.js';
import { plainUpdate, RawSite, rest, studyBody, wholeUpload } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 4 };

/**
 * The coordinator knows which sites are alive, and a round does not wait its whole deadline for one that is not:
 * refusals on streams reach the site, a site that stops sending heartbeats is marked away, one that vanishes
 * mid-round is given a grace period and then named among the round's failures, and a round whose sites all answered
 * just before a crash closes at start-up.
 */
describe('site liveness', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });
  const start = async (options: Record<string, unknown> = {}, dir?: string): Promise<{ coordinator: RunningCoordinator; dir: string }> => {
    const dataDir = dir ?? (await mkdtemp(join(tmpdir(), 'federa-liveness-')));
    if (!dir) cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir, ...options }));
    cleanup.push(() => coordinator.close());
    return { coordinator, dir: dataDir };
  };
  const connect = async (coordinator: RunningCoordinator, id: string): Promise<RawSite> => {
    const site = new RawSite(coordinator.grpcPort, id);
    cleanup.push(() => site.close());
    await site.register();
    return site;
  };

  it('ends a refused task stream with its status at once, instead of leaving the site to its deadline', async () => {
    const { coordinator } = await start();
    const stranger = new RawSite(coordinator.grpcPort, 'never-registered');
    cleanup.push(() => stranger.close());
    const began = Date.now();
    const error = (await stranger.firstTask().catch((e: ServiceError) => e)) as ServiceError;
    expect(status[error.code]).toBe('FAILED_PRECONDITION');
    expect(error.details).toMatch(/must call Register first/);
    expect(Date.now() - began).toBeLessThan(3_000);
  });

  it('marks a site away when its heartbeats stop, and keeps one that sends them', async () => {
    const { coordinator } = await start({ siteAwaySeconds: 3 });
    const quiet = await connect(coordinator, 'site-quiet');
    const alive = await connect(coordinator, 'site-alive');
    const quietStream = quiet.inbox();
    const aliveStream = alive.inbox();
    cleanup.push(() => quietStream.close(), () => aliveStream.close());
    await expect.poll(() => coordinator.connectedSites()).toEqual(['site-alive', 'site-quiet']);
    const beat = setInterval(() => void alive.heartbeat(), 1_000);
    cleanup.push(() => clearInterval(beat));
    expect((await alive.heartbeat()).response?.streamAttached).toBe(true);
    await expect.poll(() => coordinator.connectedSites(), { timeout: 8_000 }).toEqual(['site-alive']);
    const sites = (await rest(coordinator, 'GET', '/sites')).body as unknown as Array<{ id: string; connected: boolean }>;
    expect(sites.map((s) => [s.id, s.connected])).toEqual([
      ['site-alive', true],
      ['site-quiet', false],
    ]);
    // The quiet site learns its stream is gone from its next heartbeat.
    expect((await quiet.heartbeat()).response?.streamAttached).toBe(false);
  });

  it('refuses a second agent started with the same site id while the first is alive, and takes over once it is gone', async () => {
    const { coordinator } = await start({ siteAwaySeconds: 3 });
    const first = new RawSite(coordinator.grpcPort, 'site-a', 'agent-one');
    const second = new RawSite(coordinator.grpcPort, 'site-a', 'agent-two');
    cleanup.push(() => first.close(), () => second.close());
    await first.register();
    const firstStream = first.inbox();
    cleanup.push(() => firstStream.close());
    await expect.poll(() => coordinator.connectedSites()).toEqual(['site-a']);
    const refused = (await second.firstTask().catch((e: ServiceError) => e)) as ServiceError;
    expect(status[refused.code]).toBe('ALREADY_EXISTS');
    expect(refused.details).toMatch(/site site-a is already connected from another agent .* stop that agent first/);
    // The second agent's heartbeats neither keep the first alive nor claim its stream.
    expect((await second.heartbeat()).response?.streamAttached).toBe(false);
    expect((await first.heartbeat()).response?.streamAttached).toBe(true);
    // The first agent stops (no heartbeats): once it is away, the second one connects.
    await expect.poll(() => coordinator.connectedSites(), { timeout: 8_000 }).toEqual([]);
    const secondStream = second.inbox();
    cleanup.push(() => secondStream.close());
    await expect.poll(() => coordinator.connectedSites()).toEqual(['site-a']);
    expect((await second.heartbeat()).response?.streamAttached).toBe(true);
  });

  it('stops waiting for a site that vanished mid-round after a grace period, naming it', async () => {
    const { coordinator } = await start({ reconnectGraceSeconds: 1 });
    const a = await connect(coordinator, 'site-a');
    const b = await connect(coordinator, 'site-b');
    const aTasks = a.inbox();
    const bTasks = b.inbox();
    cleanup.push(() => aTasks.close());
    await expect.poll(() => coordinator.connectedSites()).toEqual(['site-a', 'site-b']);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 1, aggregation: 'plaintext', roundTimeoutSeconds: 600 }));
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const task = await aTasks.next();
    if (task.kind?.$case !== 'train') throw new Error('expected a train task');
    await bTasks.next();
    // site-b's process dies: its stream goes, and it never answers.
    bTasks.close();
    const bytes = plainUpdate(spec, task.kind.value.cohort, 'site-a', 0.01, 5);
    const header = { studyId, round: 1, encoding: task.kind.value.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.kind.value.baseModel?.sha256 ?? '' };
    expect((await a.upload(wholeUpload(header, bytes))).receipt).toBeDefined();
    await expect
      .poll(async () => ((await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ status: string }>)[0]?.status, { timeout: 10_000 })
      .toBe('closed');
    const round = ((await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ failures: Array<{ siteId: string; reason: string; message: string }>; participants: number }>)[0];
    expect(round?.participants).toBe(1);
    expect(round?.failures).toEqual([{ siteId: 'site-b', reason: 'disconnected', message: expect.stringMatching(/site site-b lost its connection .* within 1 s/) }]);
  });

  it('closes, at start-up, a round whose sites all answered just before the coordinator stopped', async () => {
    const first = await start();
    const a = await connect(first.coordinator, 'site-a');
    const b = await connect(first.coordinator, 'site-b');
    const aTasks = a.inbox();
    const bTasks = b.inbox();
    await expect.poll(() => first.coordinator.connectedSites()).toEqual(['site-a', 'site-b']);
    const created = await rest(first.coordinator, 'POST', '/studies', studyBody(spec, { minSites: 2, aggregation: 'plaintext' }));
    const studyId = created.body.id as string;
    await rest(first.coordinator, 'POST', `/studies/${studyId}/start`);
    const task = await aTasks.next();
    await bTasks.next();
    if (task.kind?.$case !== 'train') throw new Error('expected a train task');
    const cohort = task.kind.value.cohort;
    const update = (siteId: string) => plainUpdate(spec, cohort, siteId, 0.01, 5);
    const header = (bytes: Uint8Array) => ({ studyId, round: 1, encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.kind?.$case === 'train' ? (task.kind.value.baseModel?.sha256 ?? '') : '' });
    expect((await a.upload(wholeUpload(header(update('site-a')), update('site-a')))).receipt).toBeDefined();
    aTasks.close();
    bTasks.close();
    a.close();
    b.close();
    await first.coordinator.close();
    // site-b's update was the last to arrive: stored, its receipt written, and then the process stopped before the
    // round was closed.
    const bytes = update('site-b');
    const blob = await new BlobStore(join(first.dir, 'blobs')).put(bytes);
    const db = await openDatabase({ dataDir: first.dir });
    const round = await db.prisma.round.findFirstOrThrow({ where: { studyId, number: 1 } });
    await db.prisma.updateReceipt.create({ data: { id: randomUUID(), roundId: round.id, siteId: 'site-b', sha256: blob.sha256, sizeBytes: blob.size, encoding: 'UPDATE_ENCODING_PLAINTEXT_F32' } });
    await db.close();
    const second = await start({}, first.dir);
    // No site reconnects: the coordinator closes the round by itself.
    await expect
      .poll(async () => ((await rest(second.coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ status: string }>)[0]?.status, { timeout: 10_000 })
      .toBe('closed');
  });
});
