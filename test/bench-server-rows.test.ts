import { describe, expect, it } from 'vitest';
// The learning benchmark's server optimizer rows and rounds-to-plateau figures: pure helpers, checked here because a
// full run takes the better part of an hour.
import { checkpoint, learningPlotSvg, multiSeedResults } from '../bench/lib/learning-report.mjs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { medianRound, parseServerOptimizerRows, perSeedPlateaus, plateauRounds, plateauSummary, roundsToWithin, serverOptimizerDocument } from '../bench/lib/server-rows.mjs';

const curve = (...accuracies: number[]) =>
  accuracies.map((a, i) => checkpoint(i, 2 * i, { accuracy: a, balancedAccuracy: a, auc: 0.9 + a / 20, sensitivity: 0, specificity: 0, f1: 0 }));

describe('learning benchmark server optimizer rows', () => {
  it('parses rows of optimizer settings and the sites\' own optimizer, refusing what it does not know', () => {
    expect(parseServerOptimizerRows('none')).toEqual([]);
    const [m, adam] = parseServerOptimizerRows('fedavgm:learningRate=1,beta1=0.5; fedadam:learningRate=0.003,tau=0.01,localOptimizer=sgd,localLearningRate=0.05');
    expect(m).toEqual({ label: 'FedAvgM (lr 1, b1 0.5)', settings: { kind: 'fedavgm', learningRate: 1, beta1: 0.5 }, local: {} });
    expect(adam).toEqual({
      label: 'FedAdam (lr 0.003, tau 0.01) sites sgd lr 0.05',
      settings: { kind: 'fedadam', learningRate: 0.003, tau: 0.01 },
      local: { optimizer: 'sgd', learningRate: 0.05 },
    });
    expect(() => parseServerOptimizerRows('sgd:learningRate=1')).toThrow(/unknown optimizer "sgd"/);
    expect(() => parseServerOptimizerRows('fedyogi:eta=1')).toThrow(/unknown setting "eta"/);
    expect(() => parseServerOptimizerRows('fedyogi:learningRate=x')).toThrow(/learningRate needs a number/);
    expect(() => parseServerOptimizerRows('fedyogi:localOptimizer=rmsprop')).toThrow(/sgd or adam/);
    expect(parseServerOptimizerRows('fedadam:learningRate=0.02,localEpochs=4')[0]).toEqual({
      label: 'FedAdam (lr 0.02) sites 4 epochs/round',
      settings: { kind: 'fedadam', learningRate: 0.02 },
      local: { epochs: 4 },
    });
    expect(() => parseServerOptimizerRows('fedadam:localEpochs=1.5')).toThrow(/localEpochs must be a whole number >= 1/);
    // Plain FedAvg with more local work: no server optimizer, so no settings.
    expect(parseServerOptimizerRows('fedavg:localEpochs=4')).toEqual([{ label: 'FedAvg sites 4 epochs/round', settings: null, local: { epochs: 4 } }]);
    expect(() => parseServerOptimizerRows('fedavg:learningRate=1')).toThrow(/fedavg has no server optimizer, so no learningRate/);
    expect(parseServerOptimizerRows('fedavg:localEpochs=4,localProximalMu=0.1')[0]?.label).toBe('FedAvg sites 4 epochs/round FedProx mu 0.1');
  });

  it('counts the first round within a point of a reference, and the round from which a curve stays there', () => {
    const c = curve(0.5, 0.9, 0.96, 0.8, 0.965, 0.97);
    expect(roundsToWithin(c, 0.97)).toEqual({ first: 2, stays: 4 });
    // Exactly one point below counts, whatever the float rounding of the figures.
    expect(roundsToWithin(curve(0.5, 0.86, 0.87), 0.87)).toEqual({ first: 1, stays: 1 });
    expect(roundsToWithin(curve(0.5, 0.6, 0.7), 0.9)).toEqual({ first: null, stays: null });
  });

  it('judges each method against twice the rounds pooled training needs to reach its own plateau', () => {
    const p = plateauRounds({
      pooled: curve(0.5, 0.8, 0.96, 0.97, 0.97),
      fedavg: curve(0.5, 0.5, 0.7, 0.9, 0.965),
      'FedAvgM (lr 1)': curve(0.5, 0.925, 0.96, 0.93, 0.93),
    });
    expect([p.pooledFinalAccuracy, p.pooledRounds, p.targetRounds]).toEqual([0.97, 2, 4]);
    expect(
      p.rows.map((r) => [r.method, r.firstWithin1PointOfOwnFinal, r.staysWithin1PointOfOwnFinal, r.meetsTargetOnOwnFinal, r.firstWithin1PointOfPooledFinal, r.meetsTargetOnPooledFinal]),
    ).toEqual([
      ['pooled', 2, 2, true, 2, true],
      ['fedavg', 4, 4, true, 4, true],
      // Within a point of its own (lower) plateau at once, but it reaches pooled's only once and falls back.
      ['FedAvgM (lr 1)', 1, 1, true, 2, true],
    ]);
    const late = plateauRounds({ pooled: curve(0.5, 0.97, 0.97, 0.97, 0.97, 0.97), fedavg: curve(0.5, 0.5, 0.5, 0.9, 0.92, 0.92) });
    // Its plateau (0.91 or more) comes at round 4, past the budget of 2, and pooled's final never.
    expect(late.rows[1]).toMatchObject({ firstWithin1PointOfOwnFinal: 4, meetsTargetOnOwnFinal: false, firstWithin1PointOfPooledFinal: null, meetsTargetOnPooledFinal: false });
    const lines = plateauSummary({ roundsToPlateau: p, serverOptimizers: [] });
    expect(lines[0]).toMatch(/pooled ends at 97.0% and is within 1 point of it from round 2, so the budget is round 4: a plateau by then, or within 1 point of 97.0% by then/);
    expect(lines).toHaveLength(5);
  });

  it('takes the median round with rounds that never came counting as the latest', () => {
    expect(medianRound([3, 1, 2])).toBe(2);
    expect(medianRound([4, null, 2, 6])).toBe(5);
    expect(medianRound([4, null, null, 6])).toBeNull();
  });

  it('judges every seed against twice the rounds pooled needs at that seed', () => {
    const seedCurves = [
      { seed: 1, pooled: curve(0.5, 0.9, 0.96, 0.96), fedavg: curve(0.5, 0.5, 0.9, 0.95), fedprox: curve(0.5, 0.5, 0.5, 0.9) },
      { seed: 2, pooled: curve(0.5, 0.8, 0.9, 0.97), fedavg: curve(0.5, 0.6, 0.93, 0.93), fedprox: curve(0.5, 0.97, 0.97, 0.97) },
    ];
    const server = [{ label: 'FedYogi', perSeed: [{ seed: 2, curve: curve(0.5, 0.96, 0.96, 0.96) }, { seed: 1, curve: curve(0.5, 0.95, 0.95, 0.95) }] }];
    const s = perSeedPlateaus(seedCurves, server);
    expect([s.seeds, s.pooledRounds, s.targetRounds]).toEqual([[1, 2], [2, 3], [4, 6]]);
    expect(s.rows.map((r) => [r.method, r.plateau, r.seedsMeetingTarget, r.firstWithin1PointOfPooledFinal, r.seedsMeetingTargetOnPooledFinal])).toEqual([
      ['pooled', [2, 3], 2, [2, 3], 2],
      // Seed 2: its plateau is 0.93 (round 2), four points under pooled's 0.97, which it never comes within 1 point of.
      ['fedavg', [3, 2], 2, [3, null], 1],
      ['fedprox', [3, 1], 2, [null, 1], 1],
      // Matched by seed, not by position.
      ['FedYogi', [1, 1], 2, [1, 1], 2],
    ]);
    expect(s.rows[1]).toMatchObject({ medianPlateau: 2.5, medianWithin1PointOfPooledFinal: null });
    expect(() => perSeedPlateaus(seedCurves, [{ label: 'FedYogi', perSeed: [{ seed: 1, curve: curve(0.5) }] }])).toThrow(/FedYogi" has no curve for seed 2/);
  });

  it('recomputes rounds to plateau from a stored results file, changing nothing else in it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'federa-plateau-'));
    try {
      const file = join(dir, 'learning.json');
      const seedCurves = [1, 2].map((seed) => ({ seed, pooled: curve(0.5, 0.9, 0.95), fedavg: curve(0.5, 0.6, 0.94), fedprox: curve(0.5, 0.85, 0.94), singleSite: [] }));
      const stored = { curves: {}, seedCurves, serverOptimizers: [], roundsToPlateau: { stale: true }, other: { kept: [1, 2] } };
      writeFileSync(file, JSON.stringify(stored));
      const out = execFileSync(process.execPath, ['bench/plateau.mjs', file, '--write'], { encoding: 'utf8' });
      expect(out).toMatch(/seed by seed \(seeds 1 2; pooled's plateau 2 2, so the budgets are 4 4\)/);
      const rewritten = JSON.parse(readFileSync(file, 'utf8'));
      expect(rewritten.other).toEqual({ kept: [1, 2] });
      expect(rewritten.roundsToPlateau.pooledRounds).toBe(2);
      expect(rewritten.roundsToPlateau.perSeed.rows[1]).toMatchObject({ method: 'fedavg', plateau: [2, 2], seedsMeetingTarget: 2 });
      writeFileSync(file, JSON.stringify({ rows: [] }));
      expect(() => execFileSync(process.execPath, ['bench/plateau.mjs', file], { stdio: 'pipe' })).toThrow(/has no seedCurves or curves: not a learning benchmark's results/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('averages each server row over the seeds, adds the plateau table and plots the rows', () => {
    const rows = parseServerOptimizerRows('fedavgm:learningRate=1,beta1=0.5');
    const site = [{ site: 'hospital-a', images: 10, curve: curve(0.5, 0.7, 0.8) }];
    const run = (seed: number, final: number) => ({
      seed,
      curves: { pooled: curve(0.5, 0.9, 0.95), fedavg: curve(0.5, 0.85, 0.94), fedprox: curve(0.5, 0.86, 0.94), singleSite: site },
      server: [{ label: rows[0]!.label, curve: curve(0.5, 0.9, final) }],
    });
    const runs = [run(1, 0.9), run(2, 0.96)];
    const results = multiSeedResults({ runs, rounds: 2, budget: { rounds: 2, localEpochsPerRound: 2 }, fedprox: { mu: 0 }, data: {}, environment: {}, seconds: {} });
    const document = serverOptimizerDocument(runs, rows, results.curves);
    expect(document.serverOptimizers?.[0]).toMatchObject({ label: 'FedAvgM (lr 1, b1 0.5)', accuracy: 0.93, perSeed: [{ seed: 1, accuracy: 0.9 }, { seed: 2, accuracy: 0.96 }] });
    expect(document.roundsToPlateau.rows.map((r: { method: string }) => r.method)).toEqual(['pooled', 'fedavg', 'fedprox', 'FedAvgM (lr 1, b1 0.5)']);
    expect(document.roundsToPlateau.perSeed.rows.map((r: { method: string; plateau: number[] }) => [r.method, r.plateau])).toEqual([
      ['pooled', [2, 2]],
      ['fedavg', [2, 2]],
      ['fedprox', [2, 2]],
      ['FedAvgM (lr 1, b1 0.5)', [1, 2]],
    ]);
    expect(serverOptimizerDocument(runs, [], results.curves)).not.toHaveProperty('serverOptimizers');
    expect(() => serverOptimizerDocument([run(1, 0.9), { ...run(3, 0.9), server: [] }], rows, results.curves)).toThrow(/seed 3 has no row/);
    const svg = learningPlotSvg({ ...results, ...document });
    expect(svg).toContain('>FedAvgM (lr 1, b1 0.5)</text>');
    // A long label widens the image (the legend sits right of the plot) instead of running off its edge.
    const long = learningPlotSvg({ ...results, serverOptimizers: [{ ...document.serverOptimizers![0]!, label: 'x'.repeat(60) }] });
    expect(Number(/<svg [^>]*width="(\d+)"/.exec(long)?.[1])).toBe(900 + 7.5 * 60 - 160);
  });
});
