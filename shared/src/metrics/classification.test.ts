import { describe, expect, it } from 'vitest';
import {
  evaluationCounts,
  evaluationCountsSchema,
  histogramAuc,
  mergeEvaluationCounts,
  metricsFromCounts,
  metricsFromScores,
  rocAuc,
  scoreBin,
} from './index.js';

/** Binary softmax rows from positive-class scores. */
function binary(scores: number[]): number[] {
  return scores.flatMap((s) => [1 - s, s]);
}

describe('classification metrics', () => {
  // 4 positives, 6 negatives; predictions at 0.5: TP 3, FN 1, FP 1, TN 5.
  const scores = [0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1, 0.05, 0.45];
  const labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];

  it('computes the binary figures from the confusion matrix', () => {
    const m = metricsFromScores(binary(scores), labels, 2);
    expect(m.samples).toBe(10);
    expect(m.accuracy).toBeCloseTo(0.8, 12);
    expect(m.sensitivity).toBeCloseTo(3 / 4, 12);
    expect(m.specificity).toBeCloseTo(5 / 6, 12);
    expect(m.balancedAccuracy).toBeCloseTo((3 / 4 + 5 / 6) / 2, 12);
    expect(m.f1).toBeCloseTo((2 * 3) / (2 * 3 + 1 + 1), 12);
    // Pairs where the positive outranks the negative: 0.3 beats 3 of 6 negatives, the others beat all 6.
    expect(m.auc).toBeCloseTo((6 + 6 + 6 + 3) / 24, 12);
  });

  it('counts tied scores one half in the AUC', () => {
    expect(rocAuc([0.5, 0.5], [true, false])).toBe(0.5);
    expect(rocAuc([0.2, 0.5, 0.5, 0.9], [false, true, false, true])).toBeCloseTo((1 + 0.5 + 1 + 1) / 4, 12);
    expect(rocAuc([0.1, 0.2], [true, true])).toBeNull();
  });

  it('gives the same metrics from merged site counts as from the pooled predictions', () => {
    const a = evaluationCounts(binary(scores.slice(0, 5)), labels.slice(0, 5), 2);
    const b = evaluationCounts(binary(scores.slice(5)), labels.slice(5), 2);
    const merged = metricsFromCounts(mergeEvaluationCounts([a, b]));
    const pooled = metricsFromScores(binary(scores), labels, 2);
    // No two scores share a logit bin here, so the histogram AUC is exact.
    expect(merged).toEqual(pooled);
  });

  it('keeps scores near 0 and 1 apart in the histogram', () => {
    expect(scoreBin(0.999, 1024)).toBeLessThan(scoreBin(0.99999, 1024));
    expect(scoreBin(1e-3, 1024)).toBeGreaterThan(scoreBin(1e-5, 1024));
    expect(scoreBin(Number.NaN, 1024)).toBe(scoreBin(0, 1024));
    expect(histogramAuc([0, 1], [1, 0])).toBe(1);
    expect(histogramAuc([1, 1], [1, 1])).toBe(0.5);
  });

  it('macro-averages one-vs-rest for multi-class and leaves undefined figures null', () => {
    // 3 classes, perfect predictions except one class-2 image called class 0; class 1 has no images.
    const probs = [0.8, 0.1, 0.1, 0.7, 0.2, 0.1, 0.1, 0.1, 0.8, 0.6, 0.1, 0.3];
    const m = metricsFromScores(probs, [0, 0, 2, 2], 3);
    expect(m.accuracy).toBeCloseTo(0.75, 12);
    expect(m.balancedAccuracy).toBeCloseTo((1 + 0.5) / 2, 12);
    expect(m.sensitivity).toBe(m.balancedAccuracy);
    const empty = metricsFromCounts(evaluationCounts([], [], 2));
    expect(empty).toEqual({ samples: 0, accuracy: null, balancedAccuracy: null, sensitivity: null, specificity: null, f1: null, auc: null });
  });

  it('refuses counts whose shapes or totals disagree', () => {
    const good = evaluationCounts(binary(scores), labels, 2, 8);
    expect(evaluationCountsSchema.safeParse(good).success).toBe(true);
    const short = { ...good, confusion: [1, 2, 3] };
    expect(evaluationCountsSchema.safeParse(short).error?.issues[0]?.path).toEqual(['confusion']);
    const inconsistent = { ...good, positives: good.positives.map((v, i) => (i === 0 ? v + 1 : v)) };
    expect(evaluationCountsSchema.safeParse(inconsistent).error?.issues.map((i) => i.message).join()).toMatch(/class 0 histogram holds/);
    expect(() => evaluationCounts([0.5, 0.5], [3], 2)).toThrow(/label 0 is 3/);
    expect(() => mergeEvaluationCounts([good, evaluationCounts([], [], 3, 8)])).toThrow(/cannot merge/);
  });
});
