import { describe, expect, it } from 'vitest';
import { FIRST_ORDER_FEATURES, firstOrderFeatures, firstOrderStatistics } from './first-order.js';
import { FeatureInputError } from './region.js';
import { REF_FIRST_ORDER_MASK, REF_FIRST_ORDER_WHOLE, REF_MASK, REF_PLANE } from './reference.testkit.js';

function expectClose(actual: Record<string, number>, expected: Record<string, number>, digits = 12): void {
  for (const [name, value] of Object.entries(expected)) {
    expect(actual[name], name).toBeCloseTo(value, digits);
  }
}

describe('first-order statistics', () => {
  it('match a hand-worked example: 0.1, 0.2, 0.2, 0.5', () => {
    const s = firstOrderStatistics([0.5, 0.2, 0.1, 0.2]);
    // mean 0.25; deviations -0.15, -0.05, -0.05, 0.25: m2 = 0.09/4, m3 = 0.012/4, m4 = 0.004425/4.
    expectClose(s, {
      count: 4,
      mean: 0.25,
      variance: 0.0225,
      std: 0.15,
      skewness: 0.003 / 0.15 ** 3,
      excess_kurtosis: 0.00110625 / 0.0225 ** 2 - 3,
      min: 0.1,
      max: 0.5,
      median: 0.2,
      // numpy linear: rank 0.3 -> 0.1 + 0.3·0.1; rank 2.7 -> 0.2 + 0.7·0.3; P25 0.175, P75 0.275.
      p10: 0.13,
      p90: 0.41,
      iqr: 0.1,
      range: 0.4,
      mad: 0.125,
      // Only the two 0.2s lie in [0.13, 0.41].
      robust_mad: 0,
      energy: 0.34,
      rms: Math.sqrt(0.085),
      // 32 bins: 0.1 -> bin 3, 0.2 -> bin 6 (twice), 0.5 -> bin 16: p = 1/4, 1/2, 1/4.
      entropy: 1.5,
      uniformity: 0.375,
    });
  });

  it('match pyradiomics formulas inside a mask and over the whole image', () => {
    const masked = firstOrderFeatures(REF_PLANE, REF_MASK);
    const whole = firstOrderFeatures(REF_PLANE, null);
    expectClose(Object.fromEntries(FIRST_ORDER_FEATURES.map((n, i) => [n, masked[i]!])), REF_FIRST_ORDER_MASK);
    expectClose(Object.fromEntries(FIRST_ORDER_FEATURES.map((n, i) => [n, whole[i]!])), REF_FIRST_ORDER_WHOLE);
  });

  it('give a flat region zero skewness and excess kurtosis, and put 1 in the top bin', () => {
    const s = firstOrderStatistics([1, 1, 1], { histogramBins: 4 });
    expect(s).toMatchObject({ variance: 0, skewness: 0, excess_kurtosis: 0, entropy: 0, uniformity: 1, iqr: 0, robust_mad: 0 });
    // A third of 1/3 is not exactly representable, so the mean may be off in its last bit: still flat.
    expect(firstOrderStatistics([0.1, 0.1, 0.1]).skewness).toBe(0);
  });

  it('count histogram bins from the option (entropy of 4 values spread over 4 of 4 bins is 2 bits)', () => {
    expect(firstOrderStatistics([0, 0.3, 0.6, 0.99], { histogramBins: 4 }).entropy).toBeCloseTo(2, 12);
    expect(firstOrderStatistics([0, 0.3, 0.6, 0.99], { histogramBins: 2 }).entropy).toBeCloseTo(1, 12);
  });

  it('leave robust MAD undefined for two distinct values, as pyradiomics does', () => {
    expect(firstOrderStatistics([0.2, 0.4]).robust_mad).toBeNaN();
  });

  it('refuse an empty mask, a wrong-sized mask and a bad bin count', () => {
    expect(() => firstOrderFeatures(REF_PLANE, new Uint8Array(90))).toThrow(FeatureInputError);
    expect(() => firstOrderFeatures(REF_PLANE, new Uint8Array(89))).toThrow(/mask has 89 pixels, expected 9x10/);
    expect(() => firstOrderStatistics([0.5], { histogramBins: 1 })).toThrow(/histogramBins/);
  });
});
