import { describe, expect, it } from 'vitest';
// The learning benchmark end to end at its smoke size (seconds): a full run takes the better part of an hour, so
// this is what keeps its wiring (options, every row, the results document, the summary) from breaking unseen.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBench } from './support/bench-run.js';

const bench = (...args: string[]) => runBench('learning', ...args);

describe('learning benchmark smoke run', () => {
  it('runs every kind of row on z-scored images and writes the results, the plot and the plateau tables', () => {
    const dir = mkdtempSync(join(tmpdir(), 'federa-learning-smoke-'));
    try {
      const out = join(dir, 'learning.json');
      const run = bench('--quick', '--rounds', '2', '--normalise', 'z-score', '--linear', 'logistic-regression', '--server-optimizers', 'fedyogi:learningRate=0.02,localEpochs=2', '--out', out);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/seed by seed \(seeds 1; pooled's plateau/);
      const results = JSON.parse(readFileSync(out, 'utf8'));
      expect(results.budget).toMatchObject({ normalise: 'z-score', images: "as the hospitals' scanners wrote them" });
      expect(results.dp).toHaveLength(2);
      expect(results.serverOptimizers.map((r: { label: string }) => r.label)).toEqual(['FedYogi (lr 0.02) sites 2 epochs/round']);
      expect(results.roundsToPlateau.perSeed.rows.map((r: { method: string }) => r.method)).toEqual(['pooled', 'fedavg', 'fedprox', 'FedYogi (lr 0.02) sites 2 epochs/round']);
      expect(results.linear).toBeDefined();
      expect(readFileSync(join(dir, 'learning.png')).subarray(1, 4).toString()).toBe('PNG');
      // The plateau tables again from the stored curves: the same figures.
      const again = execFileSync(process.execPath, ['bench/plateau.mjs', out], { encoding: 'utf8' });
      expect(again).toContain(run.stdout.slice(run.stdout.indexOf('rounds to plateau'), run.stdout.indexOf('wrote ')).trim());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses options it cannot honour before making any data', () => {
    expect(bench('--normalise', 'sharpen').stderr).toMatch(/--normalise must be unit, min-max, z-score or histogram-equalisation, got sharpen/);
    expect(bench('--seeds', '1,1').stderr).toMatch(/--seeds lists a seed twice/);
    expect(bench('--server-optimizers', 'fedyogi:eta=1').stderr).toMatch(/unknown setting "eta"/);
  });
});
