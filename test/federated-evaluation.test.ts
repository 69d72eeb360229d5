import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createPrng,
  evaluationCounts,
  federation,
  mergeEvaluationCounts,
  metricsFromCounts,
  type EvaluationCounts,
  type ModelSpec,
} from '@federa/shared';
import { openDatabase, parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';
import { RawSite, rest, studyBody, wholeUpload, type TaskInbox, plainUpdate } from './support/raw-site.js';

/**
 * After each round the coordinator asks the sites the model was made from to score it on their held-out data; they
 * answer with counts only. Bad, foreign and duplicate reports are refused with a status naming the problem;
 * evaluation never holds a study up; unanswered requests survive a coordinator restart and are replayed.
 */
const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 6 };
const CLASSES = ['normal', 'lesion'];

const taskOf = <K extends NonNullable<federation.Task['kind']>['$case']>(task: federation.Task, kind: K) => {
  if (task.kind?.$case !== kind) throw new Error(`expected a ${kind} task, got ${task.kind?.$case ?? 'nothing'}`);
  return task.kind.value as Extract<NonNullable<federation.Task['kind']>, { $case: K }>['value'];
};

/** Counts a site could have produced: `images` random binary predictions with `bins` score bins. */
function fakeCounts(seed: number, images: number, bins: number): EvaluationCounts {
  const prng = createPrng(seed);
  const scores = Array.from({ length: images }, () => prng.nextFloat());
  const labels = scores.map((s) => (prng.nextFloat() < s ? 1 : 0));
  return evaluationCounts(scores.flatMap((s) => [1 - s, s]), labels, 2, bins);
}

function reportOf(task: federation.EvaluateTask, counts: EvaluationCounts, overrides: Partial<federation.EvaluationReport> = {}): federation.EvaluationReport {
  return {
    studyId: task.studyId,
    round: task.round,
    classNames: task.classNames,
    bins: counts.bins,
    confusion: counts.confusion,
    positives: counts.positives,
    negatives: counts.negatives,
    backend: 'test',
    seconds: 0.25,
    ...overrides,
  };
}

interface EvaluationView {
  requestedSites: string[];
  pendingSites: string[];
  sites: Array<{ siteId: string; samples: number; accuracy: number | null; confusion: number[][]; counts?: EvaluationCounts }>;
  overall: (ReturnType<typeof metricsFromCounts> & { sites: number }) | null;
}

describe('federated evaluation', () => {
  let dataDir: string;
  const coordinators: RunningCoordinator[] = [];
  const clients: RawSite[] = [];
  let coordinator: RunningCoordinator;
  let studyId: string;
  const inbox = new Map<string, TaskInbox>();
  const sent = new Map<string, EvaluationCounts>();
  let round1: federation.EvaluateTask;
  const train2 = new Map<string, federation.TrainTask>();

  const start = async (): Promise<void> => {
    coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir }));
    coordinators.push(coordinator);
  };
  const site = (id: string): RawSite => {
    const s = new RawSite(coordinator.grpcPort, id);
    clients.push(s);
    return s;
  };
  const connect = async (id: string): Promise<RawSite> => {
    const s = site(id);
    await s.register();
    inbox.set(id, s.inbox());
    return s;
  };
  const next = (id: string): Promise<federation.Task> => inbox.get(id)!.next();
  const studyRounds = async () =>
    (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ number: number; evaluation: EvaluationView | null }>;
  const upload = async (s: RawSite, task: federation.TrainTask, shift: number, weight: number) => {
    const bytes = plainUpdate(spec, task.cohort, s.siteId ?? '', shift, weight);
    const header = {
      studyId,
      round: task.round,
      encoding: task.encoding,
      totalBytes: bytes.byteLength,
      vectorLength: bytes.byteLength / 4,
      baseModelSha256: task.baseModel?.sha256 ?? '',
    };
    expect((await s.upload(wholeUpload(header, bytes))).error).toBeUndefined();
  };

  let a: RawSite;
  let b: RawSite;
  let c: RawSite;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'federa-evaluation-'));
    await start();
    a = await connect('site-a');
    b = await connect('site-b');
    // Registered, but not connected when the round opens: never a participant.
    c = site('site-c');
    await c.register();
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { rounds: 2, aggregation: 'plaintext' }));
    studyId = created.body.id as string;
    await new Promise((r) => setTimeout(r, 200));
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    await upload(a, taskOf(await next('site-a'), 'train'), 0.01, 30);
    await upload(b, taskOf(await next('site-b'), 'train'), 0.02, 10);
  });

  afterAll(async () => {
    for (const i of inbox.values()) i.close();
    for (const s of clients) s.close();
    for (const running of coordinators) await running.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('asks each contributing site to evaluate the published model before it trains on it', async () => {
    round1 = taskOf(await next('site-a'), 'evaluate');
    const published = (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ model: { sha256: string } }>;
    expect(round1).toMatchObject({ studyId, round: 1, classNames: CLASSES, bins: 1024, model: { ...spec } });
    expect(round1.globalModel).toMatchObject({ round: 1, kind: federation.ModelKind.MODEL_KIND_WEIGHTS, sha256: published[0]?.model.sha256 });
    expect(round1.preprocessingJson).not.toBe('');
    for (const id of ['site-a', 'site-b']) {
      if (id === 'site-b') expect(taskOf(await next(id), 'evaluate')).toEqual(round1);
      const train = taskOf(await next(id), 'train');
      expect(train.round).toBe(2);
      train2.set(id, train);
    }
    const [first] = await studyRounds();
    expect(first?.evaluation).toEqual({ requestedSites: ['site-a', 'site-b'], pendingSites: ['site-a', 'site-b'], refusedSites: [], sites: [], overall: null });
  });

  it('refuses each bad, foreign or duplicate report with a status that names the problem', async () => {
    const good = fakeCounts(1, 40, round1.bins);
    const z = site('site-z');
    const cases: Array<[string, RawSite, federation.EvaluationReport, status, RegExp]> = [
      ['wrong class order', a, reportOf(round1, good, { classNames: ['lesion', 'normal'] }), status.INVALID_ARGUMENT, /class_names: \[lesion, normal\] are not the study's classes/],
      ['extra class', a, reportOf(round1, good, { classNames: [...CLASSES, 'cyst'] }), status.INVALID_ARGUMENT, /class_names: /],
      ['other bins', a, reportOf(round1, fakeCounts(1, 40, 64)), status.INVALID_ARGUMENT, /bins: is 64, the evaluation task asked for 1024/],
      ['short confusion matrix', a, reportOf(round1, good, { confusion: [1, 2, 3] }), status.INVALID_ARGUMENT, /confusion: has 3 cells, expected classes² = 4/],
      ['histograms of the wrong size', a, reportOf(round1, good, { negatives: [1] }), status.INVALID_ARGUMENT, /negatives: has 1 cells, expected classes x bins = 2048/],
      ['histograms that disagree with the matrix', a, reportOf(round1, good, { positives: good.positives.map((v, i) => (i === 5 ? v + 3 : v)) }), status.INVALID_ARGUMENT, /positives: class 0 histogram holds/],
      ['unknown study', a, reportOf(round1, good, { studyId: 'nope' }), status.NOT_FOUND, /study nope does not exist/],
      ['site not assigned to the round', c, reportOf(round1, good), status.PERMISSION_DENIED, /site-c is not a participant of round 1/],
      ['unregistered site', z, reportOf(round1, good), status.FAILED_PRECONDITION, /Register first/],
      ['model not published yet', a, reportOf(round1, good, { round: 2 }), status.FAILED_PRECONDITION, /was not asked to evaluate round 2/],
    ];
    for (const [name, from, report, code, message] of cases) {
      const error = await from.reportEvaluation(report);
      expect([name, status[error?.code ?? 0]]).toEqual([name, status[code]]);
      expect(error?.details, name).toMatch(message);
    }
    expect(await a.reportEvaluation(reportOf(round1, good))).toBeNull();
    sent.set('site-a/1', good);
    const again = await a.reportEvaluation(reportOf(round1, fakeCounts(2, 40, round1.bins)));
    expect(status[again?.code ?? 0]).toBe('ALREADY_EXISTS');
    expect(again?.details).toMatch(/site-a already reported its evaluation of round 1 .*the first report stands/);

    const [first] = await studyRounds();
    expect(first?.evaluation?.pendingSites).toEqual(['site-b']);
    expect(first?.evaluation?.sites.map((s) => [s.siteId, s.samples])).toEqual([['site-a', 40]]);
    expect(first?.evaluation?.overall).toMatchObject({ ...metricsFromCounts(good), sites: 1 });
  });

  it('never holds the study up: it completes with evaluations outstanding, the last one asked for before StudyClosed', async () => {
    await upload(a, train2.get('site-a')!, 0.01, 30);
    await upload(b, train2.get('site-b')!, 0.02, 10);
    await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status).toBe('completed');
    for (const id of ['site-a', 'site-b']) {
      expect(taskOf(await next(id), 'evaluate').round).toBe(2);
      expect(taskOf(await next(id), 'studyClosed').outcome).toBe(federation.StudyOutcome.STUDY_OUTCOME_COMPLETED);
    }
    const rounds = await studyRounds();
    expect(rounds.map((r) => r.evaluation?.pendingSites)).toEqual([['site-b'], ['site-a', 'site-b']]);
  });

  it('replays unanswered evaluations after a coordinator restart, and reports per site and overall', async () => {
    for (const i of inbox.values()) i.close();
    await coordinator.close();
    await start();
    const b2 = await connect('site-b');
    const replayedB = [taskOf(await next('site-b'), 'evaluate'), taskOf(await next('site-b'), 'evaluate')];
    expect(replayedB.map((t) => t.round)).toEqual([1, 2]);
    const a2 = await connect('site-a');
    const replayedA = taskOf(await next('site-a'), 'evaluate');
    expect(replayedA.round).toBe(2);

    const reports: Array<[RawSite, string, federation.EvaluateTask, EvaluationCounts]> = [
      [b2, 'site-b', replayedB[0]!, fakeCounts(3, 25, 1024)],
      [b2, 'site-b', replayedB[1]!, fakeCounts(4, 25, 1024)],
      [a2, 'site-a', replayedA, fakeCounts(5, 40, 1024)],
    ];
    for (const [from, id, task, counts] of reports) {
      expect(await from.reportEvaluation(reportOf(task, counts))).toBeNull();
      sent.set(`${id}/${task.round}`, counts);
    }

    const response = await rest(coordinator, 'GET', `/studies/${studyId}/evaluation`);
    expect(response.status).toBe(200);
    const evaluation = response.body as { classNames: string[]; rounds: Array<{ number: number } & EvaluationView> };
    expect(evaluation.classNames).toEqual(CLASSES);
    expect(evaluation.rounds.map((r) => r.number)).toEqual([1, 2]);
    for (const round of evaluation.rounds) {
      const own = ['site-a', 'site-b'].map((id) => sent.get(`${id}/${round.number}`)!);
      expect(round.pendingSites).toEqual([]);
      expect(round.sites.map((s) => s.siteId)).toEqual(['site-a', 'site-b']);
      expect(round.sites.map((s) => s.counts)).toEqual(own);
      expect(round.sites.map((s) => s.samples)).toEqual(own.map((counts) => counts.confusion.reduce((x, y) => x + y, 0)));
      expect(round.sites.map((s) => s.accuracy)).toEqual(own.map((counts) => metricsFromCounts(counts).accuracy));
      expect(round.overall).toMatchObject({ ...metricsFromCounts(mergeEvaluationCounts(own)), sites: 2 });
    }
    // The study view carries the same figures, without the histograms.
    const rounds = await studyRounds();
    expect(rounds[1]?.evaluation?.overall).toEqual(evaluation.rounds[1]?.overall);
    expect(rounds[1]?.evaluation?.sites[0]?.counts).toBeUndefined();
  });

  it('keeps exactly the accepted reports in the database', async () => {
    await coordinator.close();
    const db = await openDatabase({ dataDir });
    try {
      const rows = await db.prisma.roundEvaluation.findMany({ where: { round: { studyId } }, include: { round: true } });
      expect(rows.map((r) => `${r.siteId}/${r.round.number}`).sort()).toEqual(['site-a/1', 'site-a/2', 'site-b/1', 'site-b/2']);
      for (const row of rows) expect(row.counts).toEqual(sent.get(`${row.siteId}/${row.round.number}`));
    } finally {
      await db.close();
    }
  });
});
