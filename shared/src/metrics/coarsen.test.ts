import { describe, expect, it } from 'vitest';
import { evaluationCounts, metricsFromCounts, metricsFromScores } from './classification.js';
import { coarsenEvaluationCounts, coarsenHistogram } from './coarsen.js';

describe('coarsened score histograms', () => {
  it('merges adjacent bins until each non-empty bin holds at least minCount images, keeping the total', () => {
    const histogram = [0, 1, 0, 2, 1, 0, 0, 3, 4, 0, 1, 0];
    const out = coarsenHistogram(histogram, 3);
    expect(out.reduce((a, b) => a + b, 0)).toBe(12);
    expect(out.filter((v) => v > 0).every((v) => v >= 3)).toBe(true);
    // Runs: [1..3] = 3, [4..7] = 4, [8..10] = 5 (the short tail joins the run before): middle bins.
    expect(out).toEqual([0, 0, 3, 0, 0, 4, 0, 0, 0, 5, 0, 0]);
  });

  it('puts a class with fewer than minCount images in one bin', () => {
    expect(coarsenHistogram([0, 1, 0, 0, 1, 0], 5)).toEqual([0, 0, 2, 0, 0, 0]);
    expect(coarsenHistogram([0, 0, 0], 5)).toEqual([0, 0, 0]);
  });

  it('leaves a histogram alone when every bin already holds minCount', () => {
    expect(coarsenHistogram([5, 0, 7, 9], 5)).toEqual([5, 0, 7, 9]);
  });

  it('keeps counts valid and the AUC close on a realistic evaluation', () => {
    let state = 7;
    const random = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const labels: number[] = [];
    const probabilities: number[] = [];
    for (let i = 0; i < 400; i++) {
      const label = i % 2;
      const p = Math.min(0.999, Math.max(0.001, 0.5 + (label ? 0.25 : -0.25) + (random() - 0.5) * 0.6));
      labels.push(label);
      probabilities.push(1 - p, p);
    }
    const counts = evaluationCounts(probabilities, labels, 2, 1024);
    const coarse = coarsenEvaluationCounts(counts, 5);
    for (const key of ['positives', 'negatives'] as const) {
      expect(coarse[key].filter((v) => v > 0).every((v) => v >= 5)).toBe(true);
      expect(coarse[key].reduce((a, b) => a + b, 0)).toBe(counts[key].reduce((a, b) => a + b, 0));
    }
    expect(coarse.confusion).toEqual(counts.confusion);
    const exact = metricsFromScores(probabilities, labels, 2).auc!;
    expect(Math.abs(metricsFromCounts(coarse).auc! - exact)).toBeLessThan(0.02);
  });
});
