import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { federation, initialWeights, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { fetchModel, plainUpdate, RawSite, rest, studyBody, wholeUpload } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 9 };

/** A coordinator restarted in the middle of a round picks it up from the database: nothing lost, nothing twice. */
describe('a coordinator restarted mid-round', () => {
  let dataDir: string | undefined;
  const running: RunningCoordinator[] = [];
  const sites: RawSite[] = [];

  afterAll(async () => {
    for (const s of sites) s.close();
    for (const c of running) await c.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const start = async (dir: string): Promise<RunningCoordinator> => {
    const c = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir }));
    running.push(c);
    return c;
  };
  const connect = (c: RunningCoordinator, id: string): RawSite => {
    const s = new RawSite(c.grpcPort, id);
    sites.push(s);
    return s;
  };
  const trainTask = (task: federation.Task): federation.TrainTask => {
    if (task.kind?.$case !== 'train') throw new Error(`expected a train task, got ${task.kind?.$case}`);
    return task.kind.value;
  };
  const update = (task: federation.TrainTask, siteId: string, shift: number, weight: number): federation.UpdateChunk[] => {
    const bytes = plainUpdate(spec, task.cohort, siteId, shift, weight);
    return wholeUpload(
      {
        studyId: task.studyId,
        round: task.round,
        encoding: task.encoding,
        totalBytes: bytes.byteLength,
        vectorLength: bytes.byteLength / 4,
        baseModelSha256: task.baseModel?.sha256 ?? '',
      },
      bytes,
    );
  };

  it('keeps the accepted upload, replays the missing task and aggregates exactly once', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'federa-restart-'));
    const first = await start(dataDir);
    const a1 = connect(first, 'site-a');
    const b1 = connect(first, 'site-b');
    await a1.register();
    await b1.register();
    const tasks = Promise.all([a1.firstTask(), b1.firstTask()]);
    // This coordinator runs without a kit, so it has no CKKS parameters; the encrypted path is tested elsewhere.
    const created = await rest(first, 'POST', '/studies', studyBody(spec, { rounds: 2, aggregation: 'plaintext' }));
    const studyId = created.body.id as string;
    await new Promise((r) => setTimeout(r, 200));
    await rest(first, 'POST', `/studies/${studyId}/start`);
    const [taskA] = await tasks;
    const round1 = trainTask(taskA as federation.Task);
    expect((await a1.upload(update(round1, 'site-a', 0.01, 30))).receipt).toBeDefined();
    await first.close();

    const second = await start(dataDir);
    const a2 = connect(second, 'site-a');
    const b2 = connect(second, 'site-b');
    // Site b never uploaded: its round-1 task is replayed on reconnection, with the same base model.
    const replayed = trainTask(await b2.firstTask());
    expect([replayed.studyId, replayed.round, replayed.baseModel?.sha256]).toEqual([studyId, 1, round1.baseModel?.sha256]);
    const status = await rest(second, 'GET', `/studies/${studyId}`);
    expect((status.body.rounds as Array<{ reportedSites: string[] }>)[0]?.reportedSites).toEqual(['site-a']);
    // Site a's upload survived the restart, so resending it is a duplicate, never counted twice.
    const again = await a2.upload(update(round1, 'site-a', 0.01, 30));
    expect(again.error?.details).toMatch(/already uploaded/);

    const aTasks = a2.inbox();
    expect((await b2.upload(update(replayed, 'site-b', 0.05, 10))).receipt).toBeDefined();
    // Round 1 closes: a is asked to evaluate its model, then round 2 opens with both sites (a is connected again).
    const evaluate = await aTasks.next();
    expect([evaluate.kind?.$case, evaluate.kind?.$case === 'evaluate' && evaluate.kind.value.round]).toEqual(['evaluate', 1]);
    expect(trainTask(await aTasks.next()).round).toBe(2);
    aTasks.close();
    const model = await fetchModel(second, studyId, 1);
    const base = initialWeights(spec);
    // (30 * 0.01 + 10 * 0.05) / 40 = 0.02
    const maxError = base.reduce((m, w, i) => Math.max(m, Math.abs((model[i] as number) - (w + 0.02))), 0);
    expect(maxError).toBeLessThan(1e-6);
  });
});
