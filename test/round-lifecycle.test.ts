import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { federation, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { plainUpdate, RawSite, rest, studyBody, tokenFor, wholeUpload, type TaskInbox } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 4 };

interface RoundView {
  number: number;
  status: string;
  deadlineAt: string;
  extensions: number;
  assignedSites: string[];
  failures: Array<{ siteId: string; reason: string; message: string }>;
}
interface StudyView {
  id: string;
  status: string;
  error: string | null;
  droppedSites: string[];
  rounds: RoundView[];
}

/**
 * A study's course as researchers and admins steer it: how many sites a round invites, what happens at a deadline
 * with too few updates, pausing and resuming, and dropping a site. Each study names its own sites, so the studies of
 * this file share one coordinator without sharing sites.
 */
describe('round lifecycle', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let coordinator: RunningCoordinator;

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-lifecycle-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir, reconnectGraceSeconds: 3600 }));
    cleanup.push(() => coordinator.close());
  });
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  async function connect(ids: string[]): Promise<Map<string, { site: RawSite; inbox: TaskInbox }>> {
    const sites = new Map<string, { site: RawSite; inbox: TaskInbox }>();
    for (const id of ids) {
      const site = new RawSite(coordinator.grpcPort, id);
      await site.register();
      const inbox = site.inbox();
      cleanup.push(() => inbox.close(), () => site.close());
      sites.set(id, { site, inbox });
    }
    await expect.poll(() => ids.every((id) => coordinator.connectedSites().includes(id))).toBe(true);
    return sites;
  }

  async function study(sites: string[], overrides: Record<string, unknown>): Promise<string> {
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'plaintext', sites, ...overrides }));
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await rest(coordinator, 'POST', `/studies/${id}/start`)).status).toBe(200);
    return id;
  }

  const view = async (id: string) => (await rest(coordinator, 'GET', `/studies/${id}`)).body as unknown as StudyView;

  async function nextTrain(inbox: TaskInbox, studyId: string, timeoutMs = 30_000): Promise<federation.TrainTask> {
    for (;;) {
      const task = await inbox.next(timeoutMs);
      if (task.kind?.$case === 'train' && task.kind.value.studyId === studyId) return task.kind.value;
    }
  }

  function send(site: RawSite, task: federation.TrainTask, shift = 0.01) {
    const bytes = plainUpdate(spec, task.cohort, site.siteId!, shift, 10);
    return site.upload(
      wholeUpload(
        { studyId: task.studyId, round: task.round, encoding: task.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.baseModel?.sha256 ?? '' },
        bytes,
      ),
    );
  }

  async function auditKinds(studyId: string): Promise<Array<{ kind: string; actor: string; details: Record<string, unknown> }>> {
    const response = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/audit/records?studyId=${studyId}&limit=1000`, {
      headers: { authorization: `Bearer ${await tokenFor(coordinator, 'auditor')}` },
    });
    return ((await response.json()) as { records: Array<{ kind: string; actor: string; details: Record<string, unknown> }> }).records;
  }

  it('invites at most targetSites of the connected sites to a round, a different draw each round', async () => {
    const ids = ['tg-1', 'tg-2', 'tg-3', 'tg-4', 'tg-5'];
    const sites = await connect(ids);
    const id = await study(ids, { minSites: 2, targetSites: 2, rounds: 3 });
    const cohorts: string[][] = [];
    for (let round = 1; round <= 3; round++) {
      await expect.poll(async () => (await view(id)).rounds[round - 1]?.assignedSites.length ?? 0).toBe(2);
      const cohort = (await view(id)).rounds[round - 1]!.assignedSites;
      cohorts.push(cohort);
      for (const siteId of cohort) {
        const { site, inbox } = sites.get(siteId)!;
        const task = await nextTrain(inbox, id);
        expect(task.round).toBe(round);
        expect(task.cohort).toEqual(cohort);
        expect((await send(site, task)).receipt).toBeDefined();
      }
    }
    await expect.poll(async () => (await view(id)).status).toBe('completed');
    // The draw depends on the round: five sites, three rounds, not the same two every time.
    expect(new Set(cohorts.flat()).size).toBeGreaterThan(2);
    // A target below the minimum is refused, naming the field.
    const bad = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 3, targetSites: 2 }));
    expect(bad.status).toBe(400);
    expect(bad.body.issues).toEqual([expect.stringMatching(/^targetSites: is 2 but minSites is 3/)]);
  });

  it('extends a short round once at its deadline (deadlineAction extend-once), resending the task, and closes when the late site reports', async () => {
    const sites = await connect(['ex-1', 'ex-2']);
    const id = await study(['ex-1', 'ex-2'], { minSites: 2, roundTimeoutSeconds: 5, deadlineAction: 'extend-once' });
    const first = sites.get('ex-1')!;
    const late = sites.get('ex-2')!;
    expect((await send(first.site, await nextTrain(first.inbox, id))).receipt).toBeDefined();
    const task = await nextTrain(late.inbox, id);
    const firstDeadline = (await view(id)).rounds[0]!.deadlineAt;
    await expect.poll(async () => (await view(id)).rounds[0]!.extensions, { timeout: 20_000 }).toBe(1);
    const extended = (await view(id)).rounds[0]!;
    expect(extended.status).toBe('open');
    expect(Date.parse(extended.deadlineAt)).toBeGreaterThan(Date.parse(firstDeadline));
    // The site still working gets its task again, with the new deadline.
    const again = await nextTrain(late.inbox, id);
    expect(again.round).toBe(1);
    expect((await send(late.site, task)).receipt).toBeDefined();
    await expect.poll(async () => (await view(id)).status).toBe('completed');
    const extension = (await auditKinds(id)).find((r) => r.kind === 'round.extended');
    expect(extension?.details.reason).toMatch(/1 of the 2 updates it needs; no answer from ex-2/);
  });

  it('fails a round still short after its one extension, naming the silent site', async () => {
    const sites = await connect(['xf-1', 'xf-2']);
    const id = await study(['xf-1', 'xf-2'], { minSites: 2, roundTimeoutSeconds: 5, deadlineAction: 'extend-once' });
    const one = sites.get('xf-1')!;
    expect((await send(one.site, await nextTrain(one.inbox, id))).receipt).toBeDefined();
    await expect.poll(async () => (await view(id)).status, { timeout: 30_000 }).toBe('failed');
    const failed = await view(id);
    expect(failed.rounds[0]).toMatchObject({ status: 'failed', extensions: 1 });
    expect(failed.error).toMatch(/round 1 passed its deadline \(already extended once\) with 1 of the 2 updates it needs; no answer from xf-2/);
  });

  it('pauses at the round boundary (the round in progress is published, no next one opens) and resumes; admins may, other researchers may not', async () => {
    const sites = await connect(['pa-1', 'pa-2']);
    const id = await study(['pa-1', 'pa-2'], { minSites: 2, rounds: 2, roundTimeoutSeconds: 600 });
    const tasks = await Promise.all(['pa-1', 'pa-2'].map((s) => nextTrain(sites.get(s)!.inbox, id)));
    const paused = await rest(coordinator, 'POST', `/studies/${id}/pause`, { reason: 'checking the labels of pa-2' }, 'admin');
    expect(paused.status).toBe(200);
    expect(paused.body.status).toBe('paused');
    expect((await rest(coordinator, 'POST', `/studies/${id}/pause`, {})).status).toBe(409);
    // The round in progress still takes its updates and is published.
    for (const [i, s] of ['pa-1', 'pa-2'].entries()) expect((await send(sites.get(s)!.site, tasks[i]!)).receipt).toBeDefined();
    await expect.poll(async () => (await view(id)).rounds[0]?.status).toBe('closed');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await view(id)).rounds).toHaveLength(1);
    expect((await view(id)).status).toBe('paused');

    const other = await coordinator.issueToken({ name: 'another researcher', role: 'researcher' });
    const refused = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies/${id}/resume`, {
      method: 'POST',
      headers: { authorization: `Bearer ${other.token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(refused.status).toBe(403);
    const resumed = await rest(coordinator, 'POST', `/studies/${id}/resume`, {});
    expect(resumed.status).toBe(200);
    const second = await nextTrain(sites.get('pa-1')!.inbox, id);
    expect(second.round).toBe(2);
    const kinds = (await auditKinds(id)).filter((r) => r.kind === 'study.paused' || r.kind === 'study.resumed');
    expect(kinds.map((r) => r.kind)).toEqual(['study.paused', 'study.resumed']);
    expect(kinds[0]!.details).toMatchObject({ reason: 'checking the labels of pa-2', round: 1, roundInProgress: true });
    expect(kinds[0]!.actor).not.toBe(kinds[1]!.actor);
    expect((await rest(coordinator, 'POST', `/studies/${id}/stop`, { reason: 'done testing' })).status).toBe(200);
  });

  it('drops a site: the round stops waiting for it, the site is told, its upload is refused, and later rounds leave it out', async () => {
    const ids = ['dr-1', 'dr-2', 'dr-3'];
    const sites = await connect(ids);
    const id = await study(ids, { minSites: 2, rounds: 2, roundTimeoutSeconds: 600 });
    const tasks = new Map<string, federation.TrainTask>();
    for (const s of ids) tasks.set(s, await nextTrain(sites.get(s)!.inbox, id));

    const dropped = await rest(coordinator, 'POST', `/studies/${id}/sites/dr-3/drop`, { reason: 'scanner recalibration' });
    expect(dropped.status).toBe(200);
    expect(dropped.body).toMatchObject({ droppedSites: ['dr-3'], dropped: { siteId: 'dr-3', round: 1, updateCounted: false } });
    expect((await rest(coordinator, 'POST', `/studies/${id}/sites/dr-3/drop`, {})).status).toBe(409);
    expect((await rest(coordinator, 'POST', `/studies/${id}/sites/nobody/drop`, {})).status).toBe(404);
    // Bad input is refused, naming what is wrong, and changes nothing.
    const badSite = await rest(coordinator, 'POST', `/studies/${id}/sites/${encodeURIComponent('../DR 1')}/drop`, {});
    expect(badSite.status).toBe(400);
    expect(badSite.body.error).toMatch(/^siteId: .* is not a site id/);
    const badReason = await rest(coordinator, 'POST', `/studies/${id}/sites/dr-1/drop`, { reason: 'bad\u0000reason' });
    expect(badReason.status).toBe(400);
    expect(badReason.body.issues).toEqual([expect.stringMatching(/^reason: must not contain control characters/)]);
    const extra = await rest(coordinator, 'POST', `/studies/${id}/pause`, { reason: 'x', force: true });
    expect(extra.status).toBe(400);
    expect((await rest(coordinator, 'POST', '/studies/no-such-study/pause', {})).status).toBe(404);
    expect((await view(id)).droppedSites).toEqual(['dr-3']);
    expect((await view(id)).status).toBe('running');
    const told = await sites.get('dr-3')!.inbox.next();
    expect(told.kind?.$case).toBe('studyClosed');
    if (told.kind?.$case === 'studyClosed') {
      expect(told.kind.value.outcome).toBe(federation.StudyOutcome.STUDY_OUTCOME_CANCELLED);
      expect(told.kind.value.message).toMatch(/dr-3 was dropped from the study by token:.*: scanner recalibration/);
    }
    const refused = await send(sites.get('dr-3')!.site, tasks.get('dr-3')!);
    expect(status[refused.error?.code ?? 0]).toBe('PERMISSION_DENIED');
    expect(refused.error?.details).toMatch(/dr-3 was dropped from study/);

    for (const s of ['dr-1', 'dr-2']) expect((await send(sites.get(s)!.site, tasks.get(s)!)).receipt).toBeDefined();
    await expect.poll(async () => (await view(id)).rounds[1]?.assignedSites).toEqual(['dr-1', 'dr-2']);
    const first = (await view(id)).rounds[0]!;
    expect(first.status).toBe('closed');
    expect(first.failures).toEqual([{ siteId: 'dr-3', reason: 'dropped', message: expect.stringMatching(/scanner recalibration/) }]);
    const record = (await auditKinds(id)).find((r) => r.kind === 'study.site-dropped');
    expect(record?.details).toMatchObject({ reason: 'scanner recalibration', updateCounted: false });
  });
});
