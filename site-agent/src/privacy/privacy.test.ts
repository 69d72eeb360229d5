import { join } from 'node:path';
import { addRdp, DEFAULT_RDP_ORDERS, federation, spentEpsilon, subsampledGaussianRdp } from '@federa/shared';
import { describe, expect, it } from 'vitest';
import { sitePolicySchema, type SitePolicy } from '../config/index.js';
import { PrivacyLedger } from '../ledger/index.js';
import { OPENING, tempDir } from '../ledger/ledger.testkit.js';
import { shareMetricsReport } from '../policy/index.js';
import { testStudy } from '../policy/policy.testkit.js';
import { budgetRefusal, plannedRound, PrivacyAccounts, privatizeUpdate, roundRecord, type StudySpend } from './index.js';

const sample = { mode: 'sample', clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5 };
const nothing: StudySpend = { rounds: [], rdp: DEFAULT_RDP_ORDERS.map(() => 0) };
const policy = (budget?: { epsilon: number; delta: number }): SitePolicy => sitePolicySchema.parse(budget ? { privacyBudget: budget } : {});

describe('a round\'s privacy at the site', () => {
  it('is the study\'s mechanism at the site\'s own data size', () => {
    const def = testStudy({ privacy: sample, localEpochs: 2, batchSize: 8 });
    expect(plannedRound(def, 100)).toEqual({ mode: 'sample', sampleRate: 0.08, steps: 2 * 13, noiseMultiplier: 1.1, clipNorm: 1, delta: 1e-5 });
    expect(plannedRound(testStudy(), 100)).toBeNull();
    expect(plannedRound(testStudy({ privacy: { mode: 'none' } }), 100)).toBeNull();
  });

  it('records the round and the study so far in epsilon at the study\'s delta', () => {
    const planned = plannedRound(testStudy({ privacy: sample }), 40)!;
    const one = subsampledGaussianRdp(planned.sampleRate, planned.noiseMultiplier, planned.steps);
    const record = roundRecord(planned, { rounds: [1], rdp: one });
    expect(record.epsilonRound).toBeCloseTo(spentEpsilon(one, 1e-5), 12);
    expect(record.epsilonStudy).toBeCloseTo(spentEpsilon(addRdp(one, one), 1e-5), 12);
    expect(record.epsilonStudy).toBeGreaterThan(record.epsilonRound);
  });
});

describe('the hospital\'s privacy budget', () => {
  const def = testStudy({ privacy: sample });
  const planned = plannedRound(def, 40)!;
  const perRound = subsampledGaussianRdp(planned.sampleRate, planned.noiseMultiplier, planned.steps);
  const after = (rounds: number) => spentEpsilon(perRound.map((r) => r * rounds), 1e-5);

  it('lets rounds through while the study\'s total stays within it, and refuses the one that would pass it', () => {
    const budget = { epsilon: (after(2) + after(3)) / 2, delta: 1e-5 };
    const spentTwo: StudySpend = { rounds: [1, 2], rdp: perRound.map((r) => r * 2) };
    expect(budgetRefusal(def, 2, planned, { rounds: [1], rdp: perRound }, policy(budget))).toBeNull();
    const refusal = budgetRefusal(def, 3, planned, spentTwo, policy(budget));
    expect(refusal?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET);
    expect(refusal?.message).toBe(
      `round 3 would bring this study's privacy spend to epsilon ${after(3).toFixed(3)} at delta 0.00001 (2 rounds spent ${after(2).toFixed(3)}), past this site's budget of epsilon ${budget.epsilon} (policy.privacyBudget)`,
    );
  });

  it('refuses a study without differential privacy, or with a larger delta, once a budget is set; without one, nothing', () => {
    const budget = policy({ epsilon: 8, delta: 1e-5 });
    expect(budgetRefusal(testStudy(), 1, null, nothing, budget)?.message).toMatch(/^the study has no differential privacy, so what it releases has no bound/);
    const loose = testStudy({ privacy: { ...sample, delta: 1e-3 } });
    expect(budgetRefusal(loose, 1, plannedRound(loose, 40), nothing, budget)?.message).toBe('the study\'s delta 0.001 is above this site\'s budget delta 0.00001 (policy.privacyBudget)');
    expect(budgetRefusal(testStudy(), 1, null, nothing, policy())).toBeNull();
    expect(budgetRefusal(def, 99, planned, { rounds: [1], rdp: perRound.map((r) => r * 1000) }, policy())).toBeNull();
  });

  it('is validated in site.yaml', () => {
    expect(sitePolicySchema.safeParse({ privacyBudget: { epsilon: 0, delta: 1e-5 } }).success).toBe(false);
    expect(sitePolicySchema.safeParse({ privacyBudget: { epsilon: 3, delta: 0.5 } }).success).toBe(false);
    expect(sitePolicySchema.safeParse({ privacyBudget: { epsilon: 3 } }).success).toBe(false);
    expect(sitePolicySchema.parse({ privacyBudget: { epsilon: 3, delta: 1e-6 } }).privacyBudget).toEqual({ epsilon: 3, delta: 1e-6 });
  });
});

describe('the site\'s privacy accounts', () => {
  it('sum what left, each round once, from the ledger', async () => {
    const dir = await tempDir();
    const ledger = await PrivacyLedger.open(join(dir, 'ledger.jsonl'), OPENING);
    const planned = plannedRound(testStudy({ privacy: sample }), 40)!;
    const record = roundRecord(planned, nothing);
    const update = (studyId: string, round: number, extra: Record<string, unknown>) =>
      ledger.record({ kind: 'update', studyId, round, content: new Uint8Array([round]), encryption: null, detail: { encoding: 'UPDATE_ENCODING_FLOAT32', vectorLength: 3, ...extra } });
    await update('study-a', 1, { privacy: record });
    // The same round's update sent again (a new key epoch): one release, counted once.
    await update('study-a', 1, { privacy: record });
    await update('study-a', 2, { privacy: record });
    await update('study-b', 1, {});
    const accounts = new PrivacyAccounts(join(dir, 'ledger.jsonl'));
    const spent = await accounts.spend('study-a');
    expect(spent.rounds).toEqual([1, 2]);
    const one = subsampledGaussianRdp(planned.sampleRate, planned.noiseMultiplier, planned.steps);
    spent.rdp.forEach((r, i) => expect(r).toBeCloseTo(2 * (one[i] as number), 12));
    expect((await accounts.spend('study-b')).rounds).toEqual([]);
    expect([...(await accounts.all()).keys()]).toEqual(['study-a']);
  });
});

describe('site-level noise on the update', () => {
  it('clips the whole update to the clip norm and adds noise of sd noiseMultiplier·clipNorm/√minSites', () => {
    const n = 100_000;
    const base = new Float32Array(n);
    const trained = new Float32Array(n).fill(0.01);
    // ‖update‖ = 0.01·√n ≈ 3.16, clipped to 0.5: each value 0.5/√n.
    const { weights, norm } = privatizeUpdate(base, trained, { clipNorm: 0.5, noiseMultiplier: 0.4, minSites: 4 });
    expect(norm).toBeCloseTo(0.01 * Math.sqrt(n), 3);
    let mean = 0;
    for (const w of weights) mean += w;
    mean /= n;
    let variance = 0;
    for (const w of weights) variance += (w - mean) ** 2;
    variance /= n - 1;
    // The noise is fresh from a secure source every run: the mean is checked within 4 standard errors of the noise's
    // sd 0.1 (a tighter bound failed about one run in ten), and the clipping itself exactly, with no noise.
    expect(Math.abs(mean - 0.5 / Math.sqrt(n))).toBeLessThan((4 * 0.1) / Math.sqrt(n));
    expect(Math.sqrt(variance)).toBeCloseTo((0.4 * 0.5) / 2, 2);
    const clippedOnly = privatizeUpdate(base, trained, { clipNorm: 0.5, noiseMultiplier: 1e-12, minSites: 4 }).weights;
    expect(clippedOnly.every((w) => Math.abs(w - 0.5 / Math.sqrt(n)) < 1e-9)).toBe(true);
    // An update within the clip norm is kept whole (only noise is added): with no noise it comes back as it was.
    const small = privatizeUpdate(base.subarray(0, 4), Float32Array.of(0.1, 0, 0, 0), { clipNorm: 1, noiseMultiplier: 1e-12, minSites: 3 });
    expect(small.weights[0]).toBeCloseTo(0.1, 6);
  });
});

describe('sharing the privacy spent', () => {
  const report: federation.MetricsReport = { studyId: 's', round: 1, kind: federation.MetricKind.METRIC_KIND_TRAIN, loss: 0.5, accuracy: 0.8, samples: 40, seconds: 1, backend: 'wasm', privacyEpsilon: 1.2345, privacyDelta: 1e-5 };
  it('sends it as it is under full, rounded up to two figures under aggregate, and not at all under none', () => {
    expect(shareMetricsReport(report, sitePolicySchema.parse({ shareMetrics: 'full' }))?.privacyEpsilon).toBe(1.2345);
    expect(shareMetricsReport(report, sitePolicySchema.parse({ shareMetrics: 'aggregate' }))).toMatchObject({ privacyEpsilon: 1.3, privacyDelta: 1e-5 });
    expect(shareMetricsReport({ ...report, privacyEpsilon: 0.0123 }, sitePolicySchema.parse({}))?.privacyEpsilon).toBe(0.013);
    expect(shareMetricsReport(report, sitePolicySchema.parse({ shareMetrics: 'none' }))).toBeNull();
  });
});

