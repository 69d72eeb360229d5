import { describe, expect, it } from 'vitest';
// The segmentation benchmark end to end at its smoke size (seconds; a full run takes ten minutes): options, workers,
// every arm and the results document.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBench } from './support/bench-run.js';

const bench = (...args: string[]) => runBench('segmentation', ...args);

describe('segmentation benchmark smoke run', () => {
  it('trains every arm on z-scored images and writes what it measured', () => {
    const dir = mkdtempSync(join(tmpdir(), 'federa-segmentation-smoke-'));
    try {
      const out = join(dir, 'segmentation.json');
      const run = bench('--quick', '--harmonise', 'off', '--normalise', 'z-score', '--jobs', '1', '--out', out);
      expect(run.status, run.stderr).toBe(0);
      const results = JSON.parse(readFileSync(out, 'utf8'));
      expect(results).toMatchObject({ variant: 'asAcquired', budget: { normalise: 'z-score', rounds: 2, localEpochsPerRound: 1, sites: 4, imagesPerSite: 8, holdoutImages: 8 } });
      expect(results.singleSite).toHaveLength(4);
      for (const arm of [results.pooled, results.fedavg, ...results.singleSite]) expect(arm.dice).toBeGreaterThanOrEqual(0);
      expect(run.stdout).toMatch(/targets: FedAvg within 0.02 of pooled (MET|NOT met)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses options it cannot honour before making any data', () => {
    expect(bench('--normalise', 'sharpen').stderr).toMatch(/--normalise must be unit, min-max, z-score or histogram-equalisation, got sharpen/);
    expect(bench('--rounds', '0').stderr).toMatch(/--rounds must be a positive integer, got 0/);
    expect(bench('--harmonise', 'maybe').stderr).toMatch(/--harmonise must be both, on or off, got maybe/);
  });
});
