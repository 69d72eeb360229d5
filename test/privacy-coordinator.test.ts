import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { federation, type ModelSpec } from '@federa/shared';
import type { RunningCoordinator } from '@federa/coordinator';
import { runFedera } from '../coordinator/dist/cli/program.js';
import { describeProgress } from '../coordinator/dist/cli/study-progress.js';
import { formatEpsilon, formatPrivacySettings } from '../coordinator/web/src/format.js';
import { privacySpent } from '../coordinator/web/src/round-progress.js';
import type { StudyStatus } from '../coordinator/web/src/types.js';
import { isolatedSchema, postgresReachable } from './postgres.js';
import { coordinatorWithRawSites, plainUpdate, rest, studyBody, tokenFor, wholeUpload, type RawSite, type TaskInbox } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 5 };
const SITES = ['site-a', 'site-b', 'site-c'];
const PRIVACY = { mode: 'sample', clipNorm: 1, targetEpsilon: 3, delta: 1e-5, minSamplesPerSite: 500 };

const withPostgres = await postgresReachable();

type AuditRecord = { kind: string; siteId: string | null; studyId: string | null; round: number | null; details: Record<string, unknown> };

/**
 * Differential privacy at the coordinator: a study's privacy settings resolved and audited when it is created, the
 * epsilon each site says it spent stored with its metrics and shown by the study's status (and the CLI and
 * dashboard that read it), and a site refusing to train past its privacy budget recorded and audited like any
 * other policy refusal.
 */
describe.each([{ database: 'pglite' as const }, ...(withPostgres ? [{ database: 'postgresql' as const }] : [])])('differential privacy at the coordinator ($database)', ({ database }) => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let coordinator: RunningCoordinator;
  let sites: RawSite[];
  let inboxes: TaskInbox[];
  let client: InstanceType<typeof federation.FederationServiceClient>;
  let studyId: string;
  let studyHash: string;
  const trainTasks = new Map<string, federation.TrainTask>();

  const site = (siteId: string): RawSite => sites[SITES.indexOf(siteId)]!;
  const reportRefusal = (siteId: string, refusal: Partial<federation.Refusal>): Promise<ServiceError | null> =>
    new Promise((resolve) =>
      client.reportRefusal(
        { studyId, round: 1, task: federation.TaskKind.TASK_KIND_TRAIN, reason: federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET, message: '', studyHash, ...refusal },
        site(siteId).metadata(),
        (error) => resolve(error),
      ),
    );
  const reportMetrics = (siteId: string, report: Partial<federation.MetricsReport>): Promise<ServiceError | null> =>
    site(siteId).reportMetrics({ studyId, round: 1, kind: federation.MetricKind.METRIC_KIND_TRAIN, loss: 0.5, accuracy: 0.7, samples: 600, seconds: 1, backend: 'cpu', ...report });
  const study = async (): Promise<StudyStatus> => {
    const response = await rest(coordinator, 'GET', `/studies/${studyId}`);
    expect(response.status).toBe(200);
    return response.body as unknown as StudyStatus;
  };
  const auditRecords = async (query: string): Promise<AuditRecord[]> => {
    const response = await rest(coordinator, 'GET', `/audit/records?limit=1000&${query}`, undefined, 'auditor');
    expect(response.status).toBe(200);
    return response.body.records as AuditRecord[];
  };

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-privacy-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const schema = database === 'postgresql' ? await isolatedSchema('federa_privacy') : undefined;
    if (schema) cleanup.push(() => schema.drop());
    ({ coordinator, sites, inboxes } = await coordinatorWithRawSites(
      { dataDir: join(dir, 'coordinator'), reconnectGraceSeconds: 3600, ...(schema ? { databaseUrl: schema.url } : {}) },
      SITES,
      cleanup,
    ));
    client = new federation.FederationServiceClient(`127.0.0.1:${coordinator.grpcPort}`, credentials.createInsecure());
    cleanup.push(() => client.close());
  });
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('resolves a target epsilon into the noise multiplier of the stored definition, and audits the privacy mode', async () => {
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { name: 'dp study', rounds: 1, aggregation: 'plaintext', privacy: PRIVACY }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    studyId = created.body.id as string;
    studyHash = created.body.specHash as string;
    const { definition } = await study();
    expect(definition.privacy).toMatchObject({ ...PRIVACY, noiseMultiplier: expect.any(Number) as number });
    expect(definition.privacy?.noiseMultiplier).toBeGreaterThan(0);
    // What sites approve carries the resolved noise too.
    const view = await rest(coordinator, 'GET', `/studies/${studyId}/definition`);
    expect(JSON.parse(view.body.definitionJson as string)).toMatchObject({ privacy: { noiseMultiplier: definition.privacy?.noiseMultiplier } });
    const [record] = await auditRecords(`kind=study.created&studyId=${studyId}`);
    expect(record?.details).toMatchObject({ name: 'dp study', privacy: 'sample' });
    // A study without differential privacy says so in its record.
    const plain = await rest(coordinator, 'POST', '/studies', studyBody(spec, { name: 'plain study', aggregation: 'plaintext' }));
    expect(plain.status).toBe(201);
    const [plainRecord] = await auditRecords(`kind=study.created&studyId=${plain.body.id as string}`);
    expect(plainRecord?.details).toMatchObject({ privacy: 'none' });
    expect(formatPrivacySettings(definition.privacy)).toMatch(/^sample-level \(DP-SGD\): clip norm 1, noise multiplier [\d.]+, target ε 3, δ 1e-5, calibrated for 500 images per site$/);
    expect(formatPrivacySettings(undefined)).toBe('none');
  });

  it('refuses a target epsilon no noise can reach with a 400 naming privacy.targetEpsilon', async () => {
    const refused = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'plaintext', privacy: { ...PRIVACY, targetEpsilon: 0.01 } }));
    expect(refused.status).toBe(400);
    expect(refused.body.issues).toEqual([expect.stringMatching(/^privacy\.targetEpsilon: /)]);
  });

  it("stores the epsilon a site reports with its metrics, shows it in the study's status, and refuses invalid figures", async () => {
    expect((await rest(coordinator, 'POST', `/studies/${studyId}/start`)).status).toBe(200);
    const tasks = await Promise.all(inboxes.map((inbox) => inbox.next()));
    for (const [i, task] of tasks.entries()) {
      if (task.kind?.$case !== 'train') throw new Error(`expected a train task, got ${task.kind?.$case}`);
      trainTasks.set(SITES[i]!, task.kind.value);
    }

    expect(await reportMetrics('site-a', { privacyEpsilon: 2.31, privacyDelta: 1e-5 })).toBeNull();
    expect(await reportMetrics('site-b', {})).toBeNull();
    const invalid: Array<[Partial<federation.MetricsReport>, RegExp]> = [
      [{ privacyEpsilon: -0.5, privacyDelta: 1e-5 }, /privacy_epsilon must be a finite number >= 0/],
      [{ privacyEpsilon: Number.NaN, privacyDelta: 1e-5 }, /privacy_epsilon must be a finite number >= 0/],
      [{ privacyEpsilon: Number.POSITIVE_INFINITY, privacyDelta: 1e-5 }, /privacy_epsilon must be a finite number >= 0/],
      [{ privacyEpsilon: 1, privacyDelta: 0 }, /privacy_delta must be within \(0, 1\)/],
      [{ privacyEpsilon: 1, privacyDelta: 1 }, /privacy_delta must be within \(0, 1\)/],
      [{ privacyEpsilon: 1, privacyDelta: Number.NaN }, /privacy_delta must be within \(0, 1\)/],
      [{ privacyEpsilon: 1 }, /privacy_delta is required with privacy_epsilon/],
      [{ privacyDelta: 1e-5 }, /privacy_epsilon is required with privacy_delta/],
      // An epsilon at another delta than the study's cannot be read against its budget.
      [{ privacyEpsilon: 1, privacyDelta: 1e-6 }, /privacy_delta 0.000001 is not study .*'s privacy.delta 0.00001: report the epsilon at the study's delta/],
    ];
    for (const [report, message] of invalid) {
      const error = await reportMetrics('site-a', report);
      expect([JSON.stringify(report), status[error?.code ?? status.OK]]).toEqual([JSON.stringify(report), 'INVALID_ARGUMENT']);
      expect(error?.details).toMatch(message);
    }

    // The refused reports left the stored figures as they were.
    const round = (await study()).rounds.find((r) => r.number === 1);
    expect(round?.metrics).toEqual([
      { siteId: 'site-a', kind: 'train', loss: 0.5, accuracy: 0.7, samples: 600, privacyEpsilon: 2.31, privacyDelta: 1e-5 },
      { siteId: 'site-b', kind: 'train', loss: 0.5, accuracy: 0.7, samples: 600, privacyEpsilon: null, privacyDelta: null },
    ]);
    // The audit log keeps what the site said it spent.
    const metrics = await auditRecords(`kind=site.metrics&studyId=${studyId}&siteId=site-a`);
    expect(metrics.map((r) => r.details)).toEqual([expect.objectContaining({ metric: 'METRIC_KIND_TRAIN', privacyEpsilon: 2.31, privacyDelta: 1e-5 })]);
    const refusedMetrics = await auditRecords(`kind=site.message-refused&studyId=${studyId}&siteId=site-a`);
    expect(refusedMetrics.filter((r) => r.details['message'] === 'metrics')).toHaveLength(invalid.length);
  });

  it('records a train task refused for the privacy budget, audits it, and refuses the reason for an evaluate task', async () => {
    const evaluate = await reportRefusal('site-c', { task: federation.TaskKind.TASK_KIND_EVALUATE, message: 'no budget left' });
    expect(status[evaluate?.code ?? status.OK]).toBe('INVALID_ARGUMENT');
    expect(evaluate?.details).toMatch(/REFUSAL_REASON_PRIVACY_BUDGET refuses a train task, not an evaluate task/);
    const keySwitch = await reportRefusal('site-c', { task: federation.TaskKind.TASK_KIND_KEY_SWITCH });
    expect(status[keySwitch?.code ?? status.OK]).toBe('INVALID_ARGUMENT');

    const message = 'training round 1 would spend epsilon 3.4 of study dp study; the budget is 3';
    expect(await reportRefusal('site-c', { message })).toBeNull();
    // The round stops waiting for site-c: it closes once the other two have uploaded.
    expect((await study()).rounds.find((r) => r.number === 1)?.status).toBe('open');
    for (const [i, siteId] of ['site-a', 'site-b'].entries()) {
      const task = trainTasks.get(siteId)!;
      const bytes = plainUpdate(spec, task.cohort, siteId, 0.01 * (i + 1), 10);
      const header = { studyId, round: 1, encoding: task.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.baseModel?.sha256 ?? '' };
      expect((await site(siteId).upload(wholeUpload(header, bytes))).error).toBeUndefined();
    }
    await expect.poll(async () => (await study()).rounds.find((r) => r.number === 1)?.status, { timeout: 30_000 }).toBe('closed');

    const after = await study();
    const round = after.rounds.find((r) => r.number === 1);
    const shown = { siteId: 'site-c', round: 1, task: 'train', reason: 'privacy-budget', message, studyHash };
    expect(after.refusals).toEqual([expect.objectContaining(shown)]);
    expect(round?.refusals).toEqual([expect.objectContaining(shown)]);
    expect(round?.failures).toEqual([{ siteId: 'site-c', reason: 'refused: privacy-budget', message }]);
    expect(round?.participants).toBe(2);

    const refusals = await auditRecords(`kind=site.refusal&studyId=${studyId}&siteId=site-c`);
    expect(refusals).toEqual([
      expect.objectContaining({
        round: 1,
        details: expect.objectContaining({ message: 'refusal', task: 'TASK_KIND_TRAIN', reason: 'REFUSAL_REASON_PRIVACY_BUDGET', reasonMessage: message, studyHash }) as unknown,
      }),
    ]);
    const refused = await auditRecords(`kind=site.message-refused&studyId=${studyId}&siteId=site-c`);
    expect(refused.map((r) => [r.details['message'], r.details['code']])).toEqual([
      ['refusal', 'INVALID_ARGUMENT'],
      ['refusal', 'INVALID_ARGUMENT'],
    ]);
  });

  it("shows each site's epsilon in the CLI's study status and the dashboard's round view", async () => {
    const current = await study();
    const progress = describeProgress(current as never, Date.now());
    expect(progress).toContain('  site-a    reported  loss 0.500  accuracy 0.700  (600 images)  epsilon 2.31 at delta 1e-5');
    expect(progress).toContain('  site-b    reported  loss 0.500  accuracy 0.700  (600 images)');
    expect(progress.find((line) => line.startsWith('  site-c'))).toMatch(/refused \(privacy-budget\): training round 1 would spend/);

    const dir = await mkdtemp(join(tmpdir(), 'federa-privacy-cli-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const out: string[] = [];
    const err: string[] = [];
    const env = { FEDERA_CONFIG: join(dir, 'credentials.json'), FEDERA_URL: `http://127.0.0.1:${coordinator.httpPort}`, FEDERA_TOKEN: await tokenFor(coordinator) };
    const code = await runFedera(['study', 'show', studyId], { io: { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env }, version: '0' });
    expect(code, err.join('')).toBe(0);
    const shown = out.join('');
    expect(shown).toMatch(/\n {2}privacy {2}sample-level \(DP-SGD, protects each image\): clip norm 1, noise multiplier [\d.]+, target epsilon 3, delta 1e-5, calibrated for 500 images per site\n/);
    expect(shown).toMatch(/privacy spent, as each site reports it:\n {2}site-a {2}epsilon 2\.31 at delta 1e-5 \(round 1\)\n/);
    expect(shown).not.toMatch(/site-b {2}epsilon/);

    expect(privacySpent(current, 'site-a', 1)).toEqual({ epsilon: 2.31, delta: 1e-5, round: 1 });
    // The spend so far, while a later round has no report from the site yet; none before it reported any.
    expect(privacySpent(current, 'site-a', 2)).toEqual({ epsilon: 2.31, delta: 1e-5, round: 1 });
    expect(privacySpent(current, 'site-a', 0)).toBeNull();
    expect(privacySpent(current, 'site-b', 1)).toBeNull();
    expect(formatEpsilon(2.31, 1e-5)).toBe('ε 2.31 (δ 1e-5)');
    expect(formatEpsilon(null, null)).toBe('-');
  });
});
