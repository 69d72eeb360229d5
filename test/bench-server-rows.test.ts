import { describe, expect, it } from 'vitest';
// The learning benchmark's server optimizer rows and rounds-to-plateau figures: pure helpers, checked here because a
// full run takes the better part of an hour.
import { checkpoint, learningPlotSvg, multiSeedResults } from '../bench/lib/learning-report.mjs';
import { parseServerOptimizerRows, plateauRounds, plateauSummary, roundsToWithin, serverOptimizerDocument } from '../bench/lib/server-rows.mjs';

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
    expect(p.rows.map((r) => [r.method, r.firstWithin1PointOfOwnFinal, r.staysWithin1PointOfOwnFinal, r.firstWithin1PointOfPooledFinal, r.meetsTarget])).toEqual([
      ['pooled', 2, 2, 2, true],
      ['fedavg', 4, 4, 4, true],
      // Within a point of its own (lower) plateau at once, but it reaches pooled's only once and falls back.
      ['FedAvgM (lr 1)', 1, 1, 2, true],
    ]);
    const lines = plateauSummary({ roundsToPlateau: p, serverOptimizers: [] });
    expect(lines[0]).toMatch(/pooled ends at 97.0% and is within 1 point of it from round 2, so the target is within 1 point of 97.0% by round 4/);
    expect(lines).toHaveLength(5);
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
    expect(serverOptimizerDocument(runs, [], results.curves)).not.toHaveProperty('serverOptimizers');
    expect(() => serverOptimizerDocument([run(1, 0.9), { ...run(3, 0.9), server: [] }], rows, results.curves)).toThrow(/seed 3 has no row/);
    const svg = learningPlotSvg({ ...results, ...document });
    expect(svg).toContain('>FedAvgM (lr 1, b1 0.5)</text>');
    // A long label widens the image (the legend sits right of the plot) instead of running off its edge.
    const long = learningPlotSvg({ ...results, serverOptimizers: [{ ...document.serverOptimizers![0]!, label: 'x'.repeat(60) }] });
    expect(Number(/<svg [^>]*width="(\d+)"/.exec(long)?.[1])).toBe(900 + 7.5 * 60 - 160);
  });
});
