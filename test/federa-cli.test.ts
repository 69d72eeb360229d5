import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrng, evaluationCounts, federation, type ModelSpec } from '@federa/shared';
import { runFedera } from '../coordinator/dist/cli/program.js';
import { coordinatorWithRawSites, plainUpdate, tokenFor, wholeUpload, type RawSite, type TaskInbox } from './support/raw-site.js';
import type { RunningCoordinator } from '@federa/coordinator';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 3 };

const STUDY_YAML = `# a study as a researcher writes it
name: CLI study
model:
  architecture: small-cnn
  inputSize: 16
  channels: 1
  classes: 2
  seed: 3
classNames: [normal, lesion]
rounds: 1
minSites: 2
localEpochs: 1
batchSize: 4
learningRate: 0.01
aggregation: plaintext   # raw test sites send plain updates
roundTimeoutSeconds: 60
`;

/**
 * `federa` against a running coordinator, in-process: login (an owner-only file), a study from YAML to finished
 * while `study watch` follows it over server-sent events, metrics as CSV, and the errors that say what to do.
 */
describe('federa CLI over REST', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let dir: string;
  let coordinator: RunningCoordinator;
  let sites: RawSite[];
  let inboxes: TaskInbox[];
  let env: NodeJS.ProcessEnv;
  let url: string;

  const cli = async (argv: string[], extraEnv: NodeJS.ProcessEnv = {}, isTty = false) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runFedera(argv, {
      io: { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t), env: { ...env, ...extraEnv }, isTty },
      version: '9.9.9',
    });
    return { code, out: out.join(''), err: err.join('') };
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-cli-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    ({ coordinator, sites, inboxes } = await coordinatorWithRawSites({ dataDir: join(dir, 'coordinator'), reconnectGraceSeconds: 3600 }, ['site-a', 'site-b'], cleanup));
    url = `http://127.0.0.1:${coordinator.httpPort}`;
    env = { FEDERA_CONFIG: join(dir, 'config', 'credentials.json') };
  });
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('has --help on every command and subcommand, and --version', async () => {
    for (const path of [[], ['login'], ['study'], ['study', 'create'], ['study', 'watch'], ['study', 'metrics'], ['study', 'evaluation'], ['site', 'list'], ['token', 'create'], ['token', 'revoke'], ['audit', 'verify'], ['audit', 'export'], ['audit', 'reconcile']]) {
      const help = await cli([...path, '--help']);
      expect(help.code, path.join(' ')).toBe(0);
      expect(help.out).toMatch(/^Usage: federa/);
      expect(help.out).toContain('--json');
    }
    expect(await cli(['--version'])).toMatchObject({ code: 0, out: 'federa 9.9.9\n' });
    const unknown = await cli(['study', 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown command 'frobnicate'/);
  });

  it('says how to log in when nobody has, and refuses a bad token at login without saving it', async () => {
    const none = await cli(['study', 'list']);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/not logged in: run `federa login --url/);
    const bad = await cli(['login', '--url', url, '--token', 'fed_not-a-real-token']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/refused the token .* log in again with a valid one/);
    await expect(stat(env.FEDERA_CONFIG!)).rejects.toThrow(/ENOENT/);
    const down = await cli(['login', '--url', 'http://127.0.0.1:9', '--token', 'x']);
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/cannot reach the coordinator at http:\/\/127\.0\.0\.1:9 .*is it running/);
  });

  it('runs a study from YAML to completed while watch follows it live, then exports its metrics', async () => {
    const researcher = await tokenFor(coordinator, 'researcher');
    const logged = await cli(['login', '--url', url, '--token', researcher]);
    expect(logged.code, logged.err).toBe(0);
    expect(logged.out).toMatch(/logged in to .* as .* \(researcher\)/);
    expect((await stat(env.FEDERA_CONFIG!)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(env.FEDERA_CONFIG!, 'utf8'))).toMatchObject({ url, token: researcher, role: 'researcher' });

    const file = join(dir, 'study.yaml');
    await writeFile(file, STUDY_YAML);
    const created = await cli(['study', 'create', '-f', file, '--json']);
    expect(created.code, created.err).toBe(0);
    const study = JSON.parse(created.out) as { id: string; status: string; specHash: string };
    expect(study.status).toBe('draft');
    expect((await cli(['study', 'create', '-f', file])).out).toMatch(/each hospital approves it by this hash \(federa-site approve [0-9a-f]{64}\)/);

    const started = await cli(['study', 'start', study.id]);
    expect(started.code, started.err).toBe(0);
    expect(started.out).toContain(`federa study watch ${study.id}`);

    // Watch as a script (NDJSON) and as a log (a line per change) while the sites train.
    const watchJson = cli(['study', 'watch', study.id, '--json']);
    const watchText = cli(['study', 'watch', study.id]);
    for (const [i, site] of sites.entries()) {
      const task = await inboxes[i]!.next();
      if (task.kind?.$case !== 'train') throw new Error('expected a train task');
      const bytes = plainUpdate(spec, task.kind.value.cohort, site.siteId, 0.01 * (i + 1), 10);
      const header = { studyId: study.id, round: 1, encoding: task.kind.value.encoding, totalBytes: bytes.byteLength, vectorLength: bytes.byteLength / 4, baseModelSha256: task.kind.value.baseModel?.sha256 ?? '' };
      expect(await site.reportMetrics({ studyId: study.id, round: 1, kind: federation.MetricKind.METRIC_KIND_TRAIN, loss: 0.5 + i / 10, accuracy: 0.7, samples: 10, seconds: 1, backend: 'cpu' })).toBeNull();
      // Let the watchers see the round with one site reported before the next one.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      expect((await site.upload(wholeUpload(header, bytes))).receipt).toBeDefined();
    }
    // The study is completed now, but watchers wait for the sites to score its model: the final figures.
    for (const [i, site] of sites.entries()) {
      const task = await inboxes[i]!.next();
      if (task.kind?.$case !== 'evaluate') throw new Error(`expected an evaluate task, got ${task.kind?.$case}`);
      const evaluate = task.kind.value;
      const prng = createPrng(i + 1);
      const scores = Array.from({ length: 20 }, () => prng.nextFloat());
      const counts = evaluationCounts(scores.flatMap((p) => [1 - p, p]), scores.map((p) => (prng.nextFloat() < p ? 1 : 0)), 2, evaluate.bins);
      const report = { studyId: evaluate.studyId, round: evaluate.round, classNames: evaluate.classNames, bins: counts.bins, confusion: counts.confusion, positives: counts.positives, negatives: counts.negatives, backend: 'test', seconds: 0.1 };
      expect(await site.reportEvaluation(report)).toBeNull();
    }
    const [json, text] = await Promise.all([watchJson, watchText]);
    expect(json.code, json.err).toBe(0);
    const events = json.out.trim().split('\n').map((line) => JSON.parse(line) as { event: string; data: { status?: string } });
    expect(events[0]?.event).toBe('status');
    expect(events.some((e) => e.event === 'sites')).toBe(true);
    expect(events.at(-1)).toEqual({ event: 'end', data: { status: 'completed' } });
    expect(new Set(events.filter((e) => e.event === 'status').map((e) => e.data.status))).toContain('completed');
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/round 1 site-a: reported {2}loss 0\.500 {2}accuracy 0\.700 {2}\(10 images\)/);
    expect(text.out).toMatch(/round 1 closed with 2 sites/);
    expect(text.out).toMatch(new RegExp(`study ${study.id} completed`));

    const csv = await cli(['study', 'metrics', study.id, '--csv']);
    expect(csv.code).toBe(0);
    const lines = csv.out.trim().split('\n');
    expect(lines[0]).toBe('round,site,source,samples,loss,accuracy,balanced_accuracy,sensitivity,specificity,f1,auc,dice,iou,precision,epsilon');
    expect(lines).toContain('1,site-a,train,10,0.5,0.7,,,,,,,,,');
    expect(lines).toContain('1,site-b,train,10,0.6,0.7,,,,,,,,,');
    expect(lines.filter((l) => /^1,(site-a|site-b|global),evaluation,20|^1,global,evaluation,40/.test(l))).toHaveLength(3);
    // The watchers' last status already had the figures.
    const last = events.filter((e) => e.event === 'status').at(-1)!.data as { rounds: Array<{ evaluation: { overall: { samples: number } | null } | null }> };
    expect(last.rounds.at(-1)?.evaluation?.overall?.samples).toBe(40);
    expect(text.out).toMatch(/round 1 global model: accuracy \d\.\d{3} {2}balanced accuracy/);

    const list = await cli(['study', 'list', '--json']);
    expect((JSON.parse(list.out) as Array<{ id: string; status: string }>).find((s) => s.id === study.id)?.status).toBe('completed');
    const show = await cli(['study', 'show', study.id]);
    expect(show.out).toMatch(/ROUND +STATUS +SITES/);
    expect(show.out).toMatch(/\n +1 +closed +2\/2/);
    const sitesOut = await cli(['site', 'list', '--json']);
    expect((JSON.parse(sitesOut.out) as Array<{ id: string }>).map((s) => s.id)).toEqual(['site-a', 'site-b']);
    const evaluation = await cli(['study', 'evaluation', study.id]);
    expect(evaluation).toMatchObject({ code: 0 });
    expect(evaluation.out).toMatch(/round 1 \(pooled-counts, 2 sites\)/);
    expect(evaluation.out).toMatch(/confusion matrix, round 1, all sites/);
  });

  it('draws progress bars and per-site states for a terminal', async () => {
    const { describeProgress } = await import('../coordinator/dist/cli/study-progress.js');
    const status = {
      id: 's1', name: 'demo', status: 'running', totalRounds: 4, error: null, droppedSites: ['site-c'],
      sites: [{ id: 'site-a', connected: true }, { id: 'site-b', connected: false }, { id: 'site-c', connected: true }],
      rounds: [
        { number: 1, status: 'closed', assignedSites: ['site-a', 'site-b'], reportedSites: ['site-a', 'site-b'], metrics: [], failures: [], refusals: [], closedAt: 'x', deadlineAt: null, participants: 2, evaluation: { overall: { accuracy: 0.8, balancedAccuracy: 0.75, auc: 0.9, sites: 2, samples: 100 } } },
        { number: 2, status: 'open', assignedSites: ['site-a', 'site-b', 'site-c'], reportedSites: ['site-a'], metrics: [{ siteId: 'site-a', kind: 'train', loss: 0.4, accuracy: 0.8, samples: 50 }], failures: [], refusals: [], closedAt: null, deadlineAt: new Date(Date.now() + 90_000).toISOString(), participants: 0, evaluation: null },
      ],
    };
    const lines = describeProgress(status as never, Date.now());
    expect(lines[1]).toBe('Rounds   [######..................] 1/4 done');
    expect(lines[2]).toMatch(/^Round 2 +\[########\.{16}\] 1\/3 sites reported {2}open {2}deadline in 1m 30s$/);
    expect(lines).toContain('  site-a    reported  loss 0.400  accuracy 0.800  (50 images)');
    expect(lines).toContain('  site-b    training (disconnected, waiting for it to return)');
    expect(lines).toContain('  site-c    dropped');
    expect(lines.at(-1)).toBe('Global model after round 1: accuracy 0.800  balanced accuracy 0.750  AUC 0.900  (2 sites, 100 images)');
  });

  it('tells the wrong role and an unknown study what to do, and manages tokens as an admin', async () => {
    const auditor = await tokenFor(coordinator, 'auditor');
    const file = join(dir, 'study.yaml');
    const refused = await cli(['study', 'create', '-f', file], { FEDERA_URL: url, FEDERA_TOKEN: auditor });
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/ask an admin for a token with a role that may do this/);
    const missing = await cli(['study', 'show', 'no-such-study']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/does not exist: list the studies with `federa study list`/);
    await writeFile(join(dir, 'bad.yaml'), 'name: x\nrounds: 0\n');
    const invalid = await cli(['study', 'create', '-f', join(dir, 'bad.yaml')]);
    expect(invalid.code).toBe(1);
    expect(invalid.err).toMatch(/bad\.yaml:2:9: rounds: Too small/);

    const adminEnv = { FEDERA_URL: url, FEDERA_TOKEN: await tokenFor(coordinator, 'admin') };
    const issued = await cli(['token', 'create', '--role', 'auditor', '--name', 'external auditor', '--json'], adminEnv);
    expect(issued.code, issued.err).toBe(0);
    const token = JSON.parse(issued.out) as { id: string; token: string };
    const listed = await cli(['token', 'list', '--json'], adminEnv);
    expect((JSON.parse(listed.out) as Array<{ id: string; status: string }>).find((t) => t.id === token.id)?.status).toBe('active');
    expect((await cli(['token', 'revoke', token.id], adminEnv)).out).toMatch(/revoked token .* "external auditor" \(auditor\)/);
    const gone = await cli(['whoami'], { FEDERA_URL: url, FEDERA_TOKEN: token.token });
    expect(gone.code).toBe(1);
    const badRole = await cli(['token', 'create', '--role', 'root', '--name', 'x'], adminEnv);
    expect(badRole.code).toBe(2);
    expect(badRole.err).toMatch(/Allowed choices are admin, researcher, auditor/);
  });
});
