import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { federation, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { RawSite, rest, studyBody, wholeUpload, plainUpdate } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 4 };

/** A site whose training diverges says so; the round neither waits for it nor counts anything from it. */
describe('a site that cannot contribute to a round', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let a: RawSite;
  let b: RawSite;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-failure-'));
    coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir }));
    a = new RawSite(coordinator.grpcPort, 'site-a');
    b = new RawSite(coordinator.grpcPort, 'site-b');
    await a.register();
    await b.register();
    void a.firstTask();
    void b.firstTask();
    await new Promise((r) => setTimeout(r, 200));
  });

  afterAll(async () => {
    a?.close();
    b?.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const runStudy = async (minSites: number, reason = federation.FailureReason.FAILURE_REASON_DIVERGED, message = 'loss became NaN in epoch 1, batch 3') => {
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites, aggregation: 'plaintext' }));
    const studyId = created.body.id as string;
    const started = await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const base = (started.body.initialModel as { sha256: string }).sha256;
    const cohort = (started.body.rounds as Array<{ assignedSites: string[] }>)[0]?.assignedSites ?? [];
    const bytes = plainUpdate(spec, cohort, 'site-a', 0.01, 8);
    const header = {
      studyId,
      round: 1,
      encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32,
      totalBytes: bytes.byteLength,
      vectorLength: bytes.byteLength / 4,
      baseModelSha256: base,
    };
    expect((await a.upload(wholeUpload(header, bytes))).receipt).toBeDefined();
    const failure = {
      studyId,
      round: 1,
      reason,
      message,
    };
    // A site that already uploaded cannot take its update back by reporting a failure.
    expect((await a.reportFailure(failure))?.details).toMatch(/already uploaded/);
    expect(await b.reportFailure(failure)).toBeNull();
    await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status).not.toBe('running');
    return (await rest(coordinator, 'GET', `/studies/${studyId}`)).body;
  };

  it('closes the round with the others when they are enough', async () => {
    const study = await runStudy(1);
    expect(study.status).toBe('completed');
    const round = (study.rounds as Array<{ participants: number; failures: unknown[]; reportedSites: string[] }>)[0];
    expect(round?.participants).toBe(1);
    expect(round?.reportedSites).toEqual(['site-a']);
    expect(round?.failures).toEqual([{ siteId: 'site-b', reason: 'diverged', message: 'loss became NaN in epoch 1, batch 3' }]);
  });

  it('fails the study at once, saying why, when too few sites are left', async () => {
    const study = await runStudy(2);
    expect(study.status).toBe('failed');
    expect(study.error).toMatch(/has 1 of the 2 updates it needs; sites that could not contribute: site-b: diverged/);
  });

  it('records a task the site cannot run (e.g. a model option an older agent does not know) as its own reason', async () => {
    const study = await runStudy(1, federation.FailureReason.FAILURE_REASON_UNSUPPORTED_TASK, 'invalid model spec: unrecognized key "depth"');
    expect(study.status).toBe('completed');
    const round = (study.rounds as Array<{ failures: unknown[] }>)[0];
    expect(round?.failures).toEqual([{ siteId: 'site-b', reason: 'unsupported-task', message: 'invalid model spec: unrecognized key "depth"' }]);
  });
});
