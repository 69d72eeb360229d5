import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_RDP_ORDERS, parseLedgerText, spentEpsilon, subsampledGaussianRdp, type StudyDefinitionInput } from '@federa/shared';
import { LocalConsortium, type StudyStatusView } from '../demo/src/consortium.js';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FEDERA_SITE = join(root, 'site-agent/dist/cli/main.js');

/** Site-level DP: one Gaussian release of each site's clipped update per round, whatever the site's data. */
const SIGMA = 2;
const DELTA = 1e-5;
const afterRounds = (rounds: number): number => spentEpsilon(subsampledGaussianRdp(1, SIGMA, rounds, DEFAULT_RDP_ORDERS), DELTA);
/** Room for two rounds, not three. */
const BUDGET = { epsilon: (afterRounds(2) + afterRounds(3)) / 2, delta: DELTA };

const definition = (overrides: Partial<StudyDefinitionInput> = {}): StudyDefinitionInput => ({
  name: 'differential privacy e2e',
  model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 3 },
  classNames: ['normal', 'lesion'],
  rounds: 3,
  minSites: 3,
  localSteps: 2,
  batchSize: 4,
  learningRate: 0.01,
  roundTimeoutSeconds: 120,
  ...overrides,
});

/**
 * Differential privacy end to end: three real site agents whose policy caps each study at a privacy budget. A study
 * with site-level DP spends it round by round, each site refuses the round that would pass it (reason privacy-budget,
 * audited at the coordinator and in the site's ledger), the spend sits in each site's ledger with its updates and
 * `federa-site privacy` shows it; a sample-level (DP-SGD) study accounts by the site's own data size; a study without
 * DP is refused outright by sites with a budget.
 */
describe('differential privacy with real site agents', () => {
  let workDir: string;
  let consortium: LocalConsortium;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-dp-'));
    consortium = await LocalConsortium.start({ workDir, sites: 3, imagesPerSite: 12, holdoutImages: 0, seed: 6, policy: { privacyBudget: BUDGET, shareMetrics: 'full' } });
  }, 180_000);

  afterAll(async () => {
    await consortium?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  const runStudy = (id: string): Promise<StudyStatusView> => consortium.runStudy(id, 150_000);
  const privacyOf = async (siteIndex: number, studyId: string) => {
    const site = consortium.sites[siteIndex]!;
    const { stdout } = await run(process.execPath, [FEDERA_SITE, 'privacy', '--config', site.configPath, '--study', studyId, '--json']);
    return JSON.parse(stdout) as { budget: { epsilon: number; delta: number }; studies: Array<{ mode: string; epsilon: number; rounds: Array<{ round: number; sampleRate: number; steps: number; epsilonStudy: number }>; budget: { spent: number; left: number } }> };
  };

  it('spends site-level DP round by round and has every site refuse the round that would pass its budget', async () => {
    const created = await consortium.createStudy(definition({ privacy: { mode: 'site', clipNorm: 0.1, noiseMultiplier: SIGMA, delta: DELTA } }));
    await consortium.approve(created.specHash);
    const study = await runStudy(created.id);
    expect(study.rounds.slice(0, 2).map((r) => r.status)).toEqual(['closed', 'closed']);
    expect(study.status).toBe('failed');
    const third = study.rounds[2]!;
    expect(third.refusals.map((r) => [r.siteId, r.reason]).sort()).toEqual(consortium.sites.map((s) => [s.id, 'privacy-budget']).sort());
    expect(third.refusals[0]?.message).toMatch(/^round 3 would bring this study's privacy spend to epsilon [\d.]+ at delta 0.00001 \(2 rounds spent [\d.]+\), past this site's budget/);

    // The coordinator audited each refusal; each site's ledger holds it too, after its two updates with their spend.
    const audit = await consortium.request<{ records: Array<{ siteId: string | null; details: Record<string, unknown> }> }>('GET', `/audit/records?studyId=${created.id}&kind=site.refusal&limit=100`, undefined, 'auditor');
    expect(audit.records.map((r) => [r.siteId, r.details.reason]).sort()).toEqual(consortium.sites.map((s) => [s.id, 'REFUSAL_REASON_PRIVACY_BUDGET']).sort());
    for (const [i, site] of consortium.sites.entries()) {
      const { entries } = parseLedgerText(await readFile(join(site.stateDir, 'ledger', 'ledger.jsonl'), 'utf8'));
      const own = entries.filter((e) => e.studyId === created.id);
      const updates = own.filter((e) => e.kind === 'update');
      expect(updates.map((e) => e.round)).toEqual([1, 2]);
      expect(updates.map((e) => (e.detail.privacy as { epsilonStudy: number }).epsilonStudy)).toEqual([expect.closeTo(afterRounds(1), 9), expect.closeTo(afterRounds(2), 9)]);
      expect(own.some((e) => e.kind === 'refusal' && e.round === 3 && e.detail.reason === 'REFUSAL_REASON_PRIVACY_BUDGET')).toBe(true);

      const shown = await privacyOf(i, created.id);
      expect(shown.studies).toHaveLength(1);
      expect(shown.studies[0]).toMatchObject({ mode: 'site', epsilon: expect.closeTo(afterRounds(2), 9) });
      expect(shown.studies[0]!.rounds.map((r) => [r.round, r.sampleRate, r.steps])).toEqual([[1, 1, 1], [2, 1, 1]]);
      expect(shown.studies[0]!.budget.left).toBeCloseTo(BUDGET.epsilon - afterRounds(2), 9);
    }
  });

  it('accounts DP-SGD by each site\'s own data size, and reports the spend with the site\'s metrics', async () => {
    const created = await consortium.createStudy(definition({ rounds: 1, privacy: { mode: 'sample', clipNorm: 1, noiseMultiplier: 1.5, delta: DELTA } }));
    await consortium.approve(created.specHash);
    const study = await runStudy(created.id);
    expect(study.status).toBe('completed');
    for (const [i, site] of consortium.sites.entries()) {
      const shown = (await privacyOf(i, created.id)).studies[0]!;
      // shareMetrics full: the coordinator shows exactly what the site spent.
      const reported = study.rounds[0]!.metrics.find((m) => m.siteId === site.id && m.kind === 'train');
      expect(reported).toMatchObject({ privacyEpsilon: expect.closeTo(shown.epsilon, 9), privacyDelta: DELTA });
      const [round] = shown.rounds;
      // Poisson sampling at batchSize / (the site's training images), two steps.
      expect(round?.steps).toBe(2);
      expect(round!.sampleRate).toBeGreaterThan(0);
      expect(round!.sampleRate).toBeLessThanOrEqual(1);
      expect(shown.epsilon).toBeCloseTo(spentEpsilon(subsampledGaussianRdp(round!.sampleRate, 1.5, 2, DEFAULT_RDP_ORDERS), DELTA), 9);
    }
  });

  it('has every site with a budget refuse a study without differential privacy', async () => {
    const created = await consortium.createStudy(definition({ rounds: 1 }));
    await consortium.approve(created.specHash);
    const study = await runStudy(created.id);
    expect(study.status).toBe('failed');
    expect(study.refusals.map((r) => [r.siteId, r.reason]).sort()).toEqual(consortium.sites.map((s) => [s.id, 'privacy-budget']).sort());
    expect(study.refusals[0]?.message).toMatch(/^the study has no differential privacy/);
  });
});
