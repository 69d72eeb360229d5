import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StudyDefinitionInput } from '@federa/shared';
import { LocalConsortium, type StudyStatusView } from '../demo/src/consortium.js';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FEDERA = join(root, 'coordinator/dist/cli/federa.js');
const FEDERA_SITE = join(root, 'site-agent/dist/cli/main.js');

const definition = (overrides: Partial<StudyDefinitionInput> = {}): StudyDefinitionInput => ({
  name: 'governance e2e',
  model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 3 },
  classNames: ['normal', 'lesion'],
  rounds: 1,
  minSites: 3,
  localSteps: 1,
  batchSize: 4,
  learningRate: 0.01,
  roundTimeoutSeconds: 120,
  ...overrides,
});

/**
 * The hospital decides, end to end: three real site agents (separate processes, mutual TLS) under the default site
 * policy. Nobody without a token reaches the API; a researcher's plaintext study, a cohort of one, an unapproved
 * study and an approved study whose definition then changed are each refused by every site, the refusals reach
 * the coordinator's audit log; an approved study runs, and what every site sent reconciles with what the
 * coordinator recorded, checked by the commands an auditor runs.
 */
describe('governance with real site agents', () => {
  let workDir: string;
  let consortium: LocalConsortium;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-governance-'));
    consortium = await LocalConsortium.start({ workDir, sites: 3, imagesPerSite: 12, holdoutImages: 0, seed: 5 });
  }, 180_000);

  afterAll(async () => {
    await consortium?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  const runStudy = (id: string): Promise<StudyStatusView> => consortium.runStudy(id);
  const refusalsOf = (study: StudyStatusView) => study.refusals.map((r) => [r.siteId, r.task, r.reason]).sort();
  const everySite = (reason: string) => consortium.sites.map((s) => [s.id, 'train', reason]).sort();
  const auditRecords = async (query: string) =>
    (await consortium.request<{ records: Array<{ kind: string; siteId: string | null; actor: string; round: number | null; details: Record<string, unknown> }> }>('GET', `/audit/records?${query}&limit=1000`, undefined, 'auditor')).records;

  it('refuses an anonymous caller at the API, and audits it', async () => {
    const response = await fetch(`${consortium.baseUrl}/studies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(definition({ aggregation: 'plaintext', minSites: 1 })),
    });
    expect(response.status).toBe(401);
    const refused = await auditRecords('kind=token.refused');
    expect(refused.some((r) => r.details.route === 'POST /api/v1/studies' && r.details.status === 401)).toBe(true);
  });

  it('has every site refuse a researcher\'s plaintext study, whatever its approval, and says so in the study and the audit log', async () => {
    const created = await consortium.createStudy(definition({ aggregation: 'plaintext', minSites: 1 }));
    // Even approved by mistake, the policy (requireEncryption) refuses it.
    await consortium.approve(created.specHash);
    const study = await runStudy(created.id);
    expect(study.status).toBe('failed');
    expect(refusalsOf(study)).toEqual(everySite('plaintext-not-allowed'));
    const logged = await auditRecords(`studyId=${created.id}&kind=site.refusal`);
    expect(logged.map((r) => [r.siteId, r.details.reason]).sort()).toEqual(
      consortium.sites.map((s) => [s.id, 'REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED']).sort(),
    );
  });

  it('has every site refuse an encrypted study that could aggregate a cohort of one', async () => {
    const created = await consortium.createStudy(definition({ minSites: 1 }));
    await consortium.approve(created.specHash);
    const study = await runStudy(created.id);
    expect(refusalsOf(study)).toEqual(everySite('cohort-too-small'));
    expect(study.refusals[0]?.message).toMatch(/as few as 1 sites/);
  });

  it('refuses a study the hospitals did not approve, and one whose definition changed after they approved it', async () => {
    const unapproved = await runStudy((await consortium.createStudy(definition({ name: 'not approved' }))).id);
    expect(refusalsOf(unapproved)).toEqual(everySite('not-approved'));

    const draft = await consortium.createStudy(definition({ name: 'changed after approval' }));
    await consortium.approve(draft.specHash);
    const changed = await consortium.request<StudyStatusView>('PUT', `/studies/${draft.id}`, definition({ name: 'changed after approval', rounds: 3 }));
    expect(changed.specHash).not.toBe(draft.specHash);
    const study = await runStudy(draft.id);
    expect(refusalsOf(study)).toEqual(everySite('not-approved'));
    expect(study.refusals.every((r) => r.studyHash === changed.specHash)).toBe(true);
    const log = await auditRecords(`studyId=${draft.id}`);
    expect(log.map((r) => r.kind)).toEqual(expect.arrayContaining(['study.created', 'study.changed', 'study.started', 'site.refusal', 'round.failed', 'study.failed']));
  });

  it('runs an approved study, and everything the sites sent reconciles with the coordinator\'s signed records', async () => {
    const created = await consortium.createStudy(definition({ name: 'approved' }));
    await consortium.approve(created.specHash);
    const study = await runStudy(created.id);
    expect(study.status).toBe('completed');
    expect(study.refusals).toEqual([]);
    // shareMetrics aggregate (the default): no sample counts reached the coordinator.
    expect(study.rounds[0]?.metrics.every((m) => m.samples === null)).toBe(true);
    // Registration shows each site's policy, and no site offered plaintext updates (nor single-key ones: its kit has no shared key).
    const registrations = await auditRecords('kind=site.registered');
    for (const site of consortium.sites) {
      const own = registrations.filter((r) => r.siteId === site.id);
      expect(own.length).toBeGreaterThan(0);
      expect(own.every((r) => JSON.stringify(r.details.encodings) === '["UPDATE_ENCODING_MULTIPARTY"]')).toBe(true);
    }
    // The researcher downloads the last global model: the audit log names the token that did.
    const download = await fetch(`${consortium.baseUrl}/studies/${created.id}/models/${study.rounds.length}`, { headers: { authorization: `Bearer ${consortium.tokens.researcher}` } });
    expect(download.status).toBe(200);
    await download.arrayBuffer();
    const trail = await auditRecords(`studyId=${created.id}`);
    expect(trail.map((r) => r.kind)).toEqual(expect.arrayContaining(['study.created', 'study.started', 'key.epoch-opened', 'round.opened', 'round.closed', 'aggregate.published', 'study.completed']));
    for (const round of study.rounds) {
      const received = trail.filter((r) => r.kind === 'update.received' && r.round === round.number);
      expect(received.map((r) => r.siteId).sort()).toEqual([...round.reportedSites].sort());
      for (const r of received) expect(r.details).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/), bytes: expect.any(Number) });
    }
    const whoami = await consortium.request<{ actor: string; name: string }>('GET', '/whoami');
    const downloaded = trail.filter((r) => r.kind === 'model.downloaded' && r.actor === whoami.actor);
    expect(downloaded.map((r) => r.details.by)).toEqual([whoami.name]);
    const ca = join(workDir, 'kits', 'coordinator', 'ca.pem');
    const bundle = join(workDir, 'audit-export.jsonl');
    const url = consortium.baseUrl.replace(/\/api\/v1$/, '');
    const exported = await run(process.execPath, [FEDERA, 'audit', 'export', '--url', url, '--token', consortium.tokens.auditor, '--out', bundle]);
    expect(exported.stdout).toMatch(/wrote .* records and \d+ checkpoints/);
    const verified = await run(process.execPath, [FEDERA, 'audit', 'verify', '--bundle', bundle, '--ca', ca]);
    expect(verified.stdout).toMatch(/audit log OK/);
    const online = await run(process.execPath, [FEDERA, 'audit', 'verify', '--url', url, '--ca', ca], { env: { ...process.env, FEDERA_TOKEN: consortium.tokens.auditor } });
    expect(online.stdout).toMatch(/audit log OK/);
    // An auditor's token is what it takes: a researcher's is refused.
    const refused = await run(process.execPath, [FEDERA, 'audit', 'verify', '--url', url, '--token', consortium.tokens.researcher, '--ca', ca]).catch((e: { code: number; stderr: string }) => e);
    expect((refused as { code: number }).code).toBe(1);
    expect((refused as { stderr: string }).stderr).toMatch(/403/);
    for (const site of consortium.sites) {
      const ledger = await run(process.execPath, [FEDERA_SITE, 'ledger', 'verify', '--config', site.configPath]);
      expect(ledger.stdout).toMatch(/ledger OK: .* 1 updates, 1 receipts verified/);
      const reconciled = await run(process.execPath, [
        FEDERA, 'audit', 'reconcile', '--ledger', join(site.stateDir, 'ledger', 'ledger.jsonl'), '--bundle', bundle, '--ca', ca, '--json',
      ]);
      const report = JSON.parse(reconciled.stdout) as { ok: boolean; reconciliation: { matched: number; missing: unknown[]; extra: unknown[]; altered: unknown[]; refused: unknown[] } };
      expect(report.ok).toBe(true);
      expect(report.reconciliation.missing).toEqual([]);
      expect(report.reconciliation.extra).toEqual([]);
      expect(report.reconciliation.altered).toEqual([]);
      // Registrations, the refusals above, the metrics, the update and the evaluation.
      expect(report.reconciliation.matched).toBeGreaterThanOrEqual(8);
    }
    // The same reconciliation over REST, with the ledger as the body (what the dashboard will do).
    const ledgerText = await readFile(join(consortium.sites[0]!.stateDir, 'ledger', 'ledger.jsonl'), 'utf8');
    const overRest = await fetch(`${consortium.baseUrl}/audit/reconcile`, {
      method: 'POST',
      headers: { authorization: `Bearer ${consortium.tokens.auditor}`, 'content-type': 'application/x-ndjson' },
      body: ledgerText,
    });
    expect(overRest.status).toBe(200);
    const reconciled = (await overRest.json()) as { ledger: { ok: boolean }; reconciliation: { ok: boolean; siteId: string } };
    expect(reconciled).toMatchObject({ ledger: { ok: true }, reconciliation: { ok: true, siteId: consortium.sites[0]!.id } });
    const studies = await run(process.execPath, [FEDERA_SITE, 'studies', '--config', consortium.sites[0]!.configPath, '--json']);
    const listed = JSON.parse(studies.stdout) as { studies: Array<{ hash: string; decision: string; policy: string }> };
    expect(listed.studies.find((s) => s.hash === created.specHash)?.decision).toMatch(/^approved/);
    expect(listed.studies.some((s) => s.policy.startsWith('would refuse: the study aggregates updates in the clear'))).toBe(true);
  });
});
