import { describe, expect, it } from 'vitest';
// The learning benchmark's pure helpers: a full run takes minutes, so its JSON shaping and plot are checked here.
import {
  accuracyBySource,
  accuracyPlotSvg,
  checkpoint,
  concatImages,
  dpResults,
  learningPlotSvg,
  learningResults,
  meanCurve,
  meanRecord,
  multiSeedResults,
} from '../bench/lib/learning-report.mjs';

const metrics = (accuracy: number, auc: number) => ({ accuracy, balancedAccuracy: accuracy, auc, sensitivity: 0, specificity: 0, f1: 0 });
const curve = (...accuracies: number[]) => accuracies.map((a, i) => checkpoint(i, 2 * i, metrics(a, 0.9 + a / 20)));

function results(fedavgFinal: number, fedproxFinal: number) {
  return learningResults({
    rounds: 2,
    budget: { rounds: 2, localEpochsPerRound: 2 },
    curves: {
      pooled: curve(0.5, 0.9, 0.95),
      fedavg: curve(0.5, 0.85, fedavgFinal),
      fedprox: curve(0.5, 0.86, fedproxFinal),
      singleSite: [
        { site: 'hospital-a', images: 10, curve: curve(0.5, 0.99, 0.8) },
        { site: 'hospital-b', images: 12, curve: curve(0.5, 0.7, 0.9) },
      ],
    },
    fedprox: { mu: 0.01 },
    data: {},
    environment: {},
    seconds: {},
  });
}

describe('learning benchmark report', () => {
  it('splits held-out accuracy by the hospital each image came from, and refuses mismatched inputs', () => {
    // 2 classes; rows are [p(normal), p(lesion)].
    const probabilities = new Float32Array([0.9, 0.1, 0.2, 0.8, 0.6, 0.4, 0.3, 0.7, 0.4, 0.6]);
    const labels = new Int32Array([0, 1, 1, 1, 0]);
    const sources = ['a', 'b', 'b', 'a', 'c'];
    expect(accuracyBySource(probabilities, labels, sources, 2)).toEqual({ a: 1, b: 0.5, c: 0 });
    expect(Object.keys(accuracyBySource(probabilities, labels, sources, 2))).toEqual(['a', 'b', 'c']);
    expect(() => accuracyBySource(probabilities, labels, sources.slice(1), 2)).toThrow(/must agree/);
    expect(() => accuracyBySource(probabilities.subarray(2), labels, sources, 2)).toThrow(/must agree/);
  });

  it('carries the per-source accuracies into the document only when given', () => {
    expect(results(0.94, 0.92)).not.toHaveProperty('heldOutAccuracyBySourceHospital');
    const by = { pooled: { a: 1 }, singleSite: { 'hospital-a': { a: 0.5 } }, fedavg: { a: 1 }, fedprox: { a: 0.9 } };
    const r = learningResults({
      rounds: 1,
      budget: {},
      curves: { pooled: curve(0.5, 0.9), fedavg: curve(0.5, 0.9), fedprox: curve(0.5, 0.9), singleSite: [{ site: 'hospital-a', images: 1, curve: curve(0.5, 0.6) }] },
      fedprox: { mu: 0 },
      data: {},
      environment: {},
      seconds: {},
      bySource: by,
    });
    expect(r.heldOutAccuracyBySourceHospital).toEqual(by);
  });

  it('has the documented shape, final (not best) figures, and judges both federated methods', () => {
    const r = results(0.94, 0.92);
    expect(r.pooled).toEqual({ accuracy: 0.95, balancedAccuracy: 0.95, auc: 0.9475 });
    expect(r.singleSite.map((s: { site: string; accuracy: number }) => [s.site, s.accuracy])).toEqual([
      ['hospital-a', 0.8],
      ['hospital-b', 0.9],
    ]);
    expect(r.fedavg.accuracy).toBe(0.94);
    expect(r.fedprox).toMatchObject({ accuracy: 0.92, mu: 0.01 });
    expect(r.rounds).toBe(2);
    expect(r.targets.bestSingleSite).toBe('hospital-b');
    expect(r.targets.fedavg).toEqual({
      pointsBelowPooled: 1,
      pointsAboveBestSingleSite: 4,
      federatedWithin2PointsOfPooled: true,
      federatedAboveBestSingleSite: true,
    });
    expect(r.targets.fedprox.federatedWithin2PointsOfPooled).toBe(false);
    expect(r.federatedWithin2PointsOfPooled).toBe(false);
    expect(r.federatedAboveBestSingleSite).toBe(true);
    expect(r.curves.pooled).toHaveLength(3);
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('counts exactly 2 points below pooled as within 2 points, despite float rounding', () => {
    expect(results(0.93, 0.93).federatedWithin2PointsOfPooled).toBe(true);
    expect(results(0.9299, 0.93).targets.fedavg.federatedWithin2PointsOfPooled).toBe(false);
  });

  it('pools site images in order', () => {
    const a = { images: Float32Array.of(1, 2, 3, 4), labels: Int32Array.of(0, 1), count: 2, height: 1, width: 2, channels: 1 };
    const b = { images: Float32Array.of(5, 6), labels: Int32Array.of(1), count: 1, height: 1, width: 2, channels: 1 };
    const pooled = concatImages([a, b]);
    expect(pooled.count).toBe(3);
    expect([...pooled.images]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...pooled.labels]).toEqual([0, 1, 1]);
    expect(() => concatImages([a, { ...b, width: 1, images: Float32Array.of(5) }])).toThrow(RangeError);
  });

  it('draws one line and one legend entry per series, with escaped labels', () => {
    const svg = accuracyPlotSvg({
      title: 'accuracy',
      xLabel: 'round',
      series: [
        { label: 'pooled', points: [{ x: 0, y: 0.5 }, { x: 1, y: 0.97 }], color: '#000' },
        { label: 'FedProx <mu>', points: [{ x: 0, y: 0.5 }, { x: 1, y: 0.96 }], color: '#f00', dash: '4 2' },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain('FedProx &lt;mu&gt;');
    expect(svg).toContain('stroke-dasharray="4 2"');
    // The y axis starts at a multiple of 5 at or below the lowest accuracy.
    expect(svg).toContain('>50</text>');
  });

  it('plots every method and site, with a zoomed panel over the second half fitted to the headline curves', () => {
    const svg = learningPlotSvg(results(0.94, 0.92));
    // 2 sites + pooled + FedAvg + FedProx, in the full panel and again in the zoomed one.
    expect(svg.match(/<path /g)).toHaveLength(10);
    for (const label of ['hospital-a alone', 'hospital-b alone', 'pooled', 'FedAvg', 'FedProx (mu 0.01)']) expect(svg).toContain(`>${label}</text>`);
    expect(svg).toContain('rounds 1 to 2, zoomed in');
    // Zoomed y axis fitted down to the lowest final value (hospital-a, 80 %): ticks every 5 points, unlike the
    // full panel's every 10 from 50.
    expect(svg).toContain('>85</text>');
  });

  it('averages curves checkpoint by checkpoint and records leaf by leaf, refusing mismatched shapes', () => {
    const mean = meanCurve([curve(0.5, 0.9), curve(0.5, 0.8)]);
    expect(mean.map((p: { accuracy: number }) => p.accuracy)).toEqual([0.5, 0.85]);
    expect(mean[1]).toMatchObject({ round: 1, epochs: 2, balancedAccuracy: 0.85 });
    // An undefined AUC (one-class set) is left out of the mean, not counted as zero.
    const withNull = [{ ...checkpoint(1, 2, metrics(0.6, 0.7)) }, { ...checkpoint(1, 2, metrics(0.8, 0.9)), auc: null }];
    expect(meanCurve([[withNull[0]], [withNull[1]]])[0].auc).toBe(0.7);
    expect(() => meanCurve([curve(0.5, 0.9), curve(0.5)])).toThrow(/different rounds/);
    expect(() => meanCurve([])).toThrow(/no curves/);
    expect(meanRecord([{ a: 1, b: { x: 0.2 } }, { a: 0, b: { x: 0.4 } }])).toEqual({ a: 0.5, b: { x: 0.3 } });
    expect(() => meanRecord([{ a: 1 }, { b: 1 }])).toThrow(/differ in keys/);
  });

  it('reports seed means as the headline, each seed judged on its own, and whether a target held at every seed', () => {
    const run = (seed: number, fedavg: number, siteB: number) => ({
      seed,
      curves: {
        pooled: curve(0.5, 0.9, 0.95),
        fedavg: curve(0.5, 0.85, fedavg),
        fedprox: curve(0.5, 0.86, 0.94),
        singleSite: [
          { site: 'hospital-a', images: 10, curve: curve(0.5, 0.7, 0.8) },
          { site: 'hospital-b', images: 12, curve: curve(0.5, 0.7, siteB) },
        ],
      },
      bySource: { pooled: { a: 1 }, singleSite: { 'hospital-a': { a: 0.5 }, 'hospital-b': { a: 0.7 } }, fedavg: { a: seed === 1 ? 1 : 0.8 }, fedprox: { a: 0.9 } },
    });
    const r = multiSeedResults({
      runs: [run(1, 0.94, 0.9), run(2, 0.93, 0.935)],
      rounds: 2,
      budget: { rounds: 2, localEpochsPerRound: 2 },
      fedprox: { mu: 0.01 },
      data: {},
      environment: {},
      seconds: {},
    });
    expect(r.fedavg.accuracy).toBe(0.935);
    expect(r.singleSite.map((s: { accuracy: number }) => s.accuracy)).toEqual([0.8, 0.9175]);
    expect(r.heldOutAccuracyBySourceHospital.fedavg).toEqual({ a: 0.9 });
    // On the means FedAvg (93.5) beats hospital-b (91.75); at seed 2 it does not (93 vs 93.5).
    expect(r.targets.fedavg.federatedAboveBestSingleSite).toBe(true);
    expect(r.seeds.map((s: { seed: number; targets: { fedavg: { federatedAboveBestSingleSite: boolean } } }) => [s.seed, s.targets.fedavg.federatedAboveBestSingleSite])).toEqual([
      [1, true],
      [2, false],
    ]);
    expect(r.targetsAtEverySeed).toEqual({ federatedWithin2PointsOfPooled: true, federatedAboveBestSingleSite: false });
    expect(r.seedCurves.map((c: { seed: number }) => c.seed)).toEqual([1, 2]);
    expect(r.curves.fedavg.at(-1).accuracy).toBe(0.935);
    expect(learningPlotSvg(r)).toContain('mean of 2 seeds');
    expect(() => multiSeedResults({ runs: [] })).toThrow(/no runs/);
    const other = run(3, 0.9, 0.9);
    other.curves.singleSite[1].site = 'hospital-z';
    expect(() => multiSeedResults({ runs: [run(1, 0.9, 0.9), other], rounds: 2, budget: {}, fedprox: { mu: 0 } })).toThrow(/different sites/);
  });

  it('makes the DP rows: no DP from FedAvg, then per target the seeds\' mean curve, the largest epsilon spent and noise', () => {
    const run = (seed: number, finals: [number, number]) => ({
      seed,
      dp: [
        { targetEpsilon: 1, epsilon: 0.99 + seed / 1000, noiseMultiplier: 16 + seed, sites: [], curve: curve(0.5, 0.5, finals[0]) },
        { targetEpsilon: 8, epsilon: 7.9, noiseMultiplier: 2.7, sites: [], curve: curve(0.5, 0.6, finals[1]) },
      ],
    });
    const rows = dpResults({ runs: [run(1, [0.5, 0.7]), run(2, [0.6, 0.9])], fedavg: { accuracy: 0.96, auc: 0.99 }, delta: 1e-5, clipNorm: 1 });
    expect(rows[0]).toEqual({ mode: 'none', epsilon: null, delta: null, accuracy: 0.96, auc: 0.99 });
    expect(rows.slice(1).map((r) => [r.mode, r.targetEpsilon, r.epsilon, r.noiseMultiplier, r.delta, r.clipNorm])).toEqual([
      ['sample', 1, 0.992, 18, 1e-5, 1],
      ['sample', 8, 7.9, 2.7, 1e-5, 1],
    ]);
    expect(rows[1]!.accuracy).toBeCloseTo(0.55, 6);
    expect(rows[2]!.accuracy).toBeCloseTo(0.8, 6);
    expect(rows[2]!.perSeed!.map((s) => s.accuracy)).toEqual([0.7, 0.9]);
    expect(() => dpResults({ runs: [run(1, [0.5, 0.7]), { seed: 3, dp: [run(3, [0.5, 0.5]).dp[0]!] }], fedavg: { accuracy: 0.9, auc: 0.9 }, delta: 1e-5, clipNorm: 1 })).toThrow(
      /seed 3 has different target epsilons/,
    );
  });
});
