import { describe, expect, it } from 'vitest';
import * as shared from '@federa/shared';
// The learning benchmark's feature-based rows on a tiny consortium: the real training and FedAvg path, in seconds.
import { linearResults, linearRowsForSeed } from '../bench/lib/learning-linear.mjs';

const train = await import('../site-agent/dist/train/index.js');
const features = await import('../site-agent/dist/features/index.js');

async function rowsForSeed(seed: number) {
  const siteSets = [train.brightSquareImages(16, 32, seed), train.brightSquareImages(24, 32, seed + 1)];
  return linearRowsForSeed(['logistic-regression'], {
    shared,
    train,
    features,
    seed,
    siteSets,
    siteIds: ['hospital-a', 'hospital-b'],
    holdout: train.brightSquareImages(20, 32, seed + 2),
    ckks: undefined,
    rounds: 2,
    epochs: 1,
    local: { epochs: 1, batchSize: 8, optimizer: 'adam', classWeights: 'balanced' },
    learningRateFor: () => 0.05,
    callSeed: (s: number, round: number, stream: number) => shared.deriveSeed(shared.deriveSeed(s, round), stream),
    pooledStream: 1000,
    say: () => undefined,
  });
}

describe('learning benchmark: feature-based linear rows', () => {
  it('trains each model pooled, at each site and with FedAvg, on the fixed scale and with the consortium z-score', async () => {
    const rows = await rowsForSeed(1);
    expect(rows.map((r: { scaling: string }) => r.scaling)).toEqual(['fixed', 'consortium-zscore']);
    for (const row of rows) {
      expect(row).toMatchObject({ architecture: 'logistic-regression', parameters: 48 });
      expect(row.options).not.toHaveProperty('standardize');
      expect(row.curves.fedavg.map((c: { round: number }) => c.round)).toEqual([0, 1, 2]);
      expect(row.curves.singleSite.map((s: { site: string }) => s.site)).toEqual(['hospital-a', 'hospital-b']);
      expect(row.curves.fedavg.at(-1).accuracy).toBeGreaterThan(0.9);
    }
  });

  it('averages the seeds into rows of final figures and mean curves', async () => {
    const runs = [
      { seed: 1, linear: await rowsForSeed(1) },
      { seed: 2, linear: await rowsForSeed(2) },
    ];
    const { rows, learningRate } = linearResults(runs, { learningRate: 0.05 });
    expect(learningRate).toBe(0.05);
    expect(rows).toHaveLength(2);
    const [fixed] = rows;
    const mean = (a: number, b: number) => Math.round(((a + b) / 2) * 1e4) / 1e4;
    expect(fixed.fedavg.accuracy).toBe(mean(runs[0]!.linear[0].curves.fedavg.at(-1).accuracy, runs[1]!.linear[0].curves.fedavg.at(-1).accuracy));
    expect(fixed.seeds.map((s: { seed: number }) => s.seed)).toEqual([1, 2]);
    expect(fixed.singleSite.map((s: { site: string }) => s.site)).toEqual(['hospital-a', 'hospital-b']);
    expect(Object.keys(fixed.curves)).toEqual(['pooled', 'fedavg']);
  });
});
