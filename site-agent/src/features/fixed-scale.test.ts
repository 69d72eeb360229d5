import { createPrng, FEATURE_GROUP_SIZES, FEATURE_GROUPS } from '@federa/shared';
import { describe, expect, it } from 'vitest';
import { featureMatrix, featureNames } from './extract.js';
import { applyFixedScales, fixedScales, scaleValue } from './fixed-scale.js';

const context = { pixels: 64 * 64, histogramBins: 32, glcmLevels: 16 };

/** Images a site could hold: noise at several contrasts and levels, some with a bright square or stripes. */
function variedImages(count: number, size: number, seed: number) {
  const prng = createPrng(seed);
  const images = new Float32Array(count * size * size);
  for (let n = 0; n < count; n++) {
    const level = prng.nextFloat() * 0.7;
    const contrast = 0.02 + prng.nextFloat() * 0.3;
    const pattern = n % 3;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let v = level + contrast * prng.nextFloat();
        if (pattern === 1 && y > size / 4 && y < size / 2 && x > size / 4 && x < size / 2) v = 0.95;
        if (pattern === 2 && (x & 2) === 0) v *= 0.3;
        images[n * size * size + y * size + x] = Math.min(1, v);
      }
    }
  }
  return { images, labels: new Int32Array(count), count, height: size, width: size, channels: 1 };
}

describe('fixed feature scale', () => {
  it('has a scale for every feature the extractor names, and the registry counts what the extractor gives', () => {
    for (const channels of [1, 3]) expect(fixedScales(featureNames(channels), context)).toHaveLength(47 * channels);
    for (const group of FEATURE_GROUPS) expect(featureNames(1, [group]), group).toHaveLength(FEATURE_GROUP_SIZES[group]);
    expect(() => fixedScales(['glcm_wavelet'], context)).toThrow('no fixed scale is defined for feature glcm_wavelet');
  });

  it('maps each range onto [-1, 1]: linearly, or linearly in the signed log', () => {
    const [mean, count, skewness, correlation] = fixedScales(['firstorder_mean', 'firstorder_count', 'c2_firstorder_skewness', 'glcm_correlation'], context);
    expect([0, 0.5, 1].map((x) => scaleValue(x, mean!))).toEqual([-1, 0, 1]);
    expect(scaleValue(-1, correlation!)).toBe(-1);
    expect(scaleValue(4096, count!)).toBeCloseTo(1, 12);
    expect(scaleValue(0, count!)).toBe(-1);
    expect(scaleValue(Math.sqrt(64) - 1, count!)).toBeCloseTo((2 * Math.log1p(7)) / Math.log1p(4096) - 1, 12);
    // Symmetric range: 0 in the middle, and the signed log keeps the sign.
    expect(scaleValue(0, skewness!)).toBe(0);
    expect(scaleValue(-3, skewness!)).toBeCloseTo(-scaleValue(3, skewness!), 12);
    expect(scaleValue(3, skewness!)).toBeCloseTo(Math.log1p(3) / Math.log1p(64), 12);
  });

  it('depends on the settings that bound the features, not on any data', () => {
    const [entropy16, levels16] = fixedScales(['glcm_entropy', 'glcm_dissimilarity'], context);
    const [entropy8, levels8] = fixedScales(['glcm_entropy', 'glcm_dissimilarity'], { ...context, glcmLevels: 8 });
    expect(entropy16).toEqual({ kind: 'linear', lo: 0, hi: 8 });
    expect(entropy8).toEqual({ kind: 'linear', lo: 0, hi: 6 });
    expect(levels16!.hi).toBe(15);
    expect(levels8!.hi).toBe(7);
    expect(fixedScales(['firstorder_entropy'], { ...context, histogramBins: 64 })[0]).toEqual({ kind: 'linear', lo: 0, hi: 6 });
  });

  it('puts the features of [0, 1] images inside [-1, 1], and spreads most of them over a useful part of it', () => {
    const data = variedImages(24, 64, 5);
    const matrix = featureMatrix(data);
    const scaled = applyFixedScales(matrix.values, fixedScales(matrix.names, context));
    for (let i = 0; i < scaled.length; i++) {
      expect(Math.abs(scaled[i]!), matrix.names[i % matrix.columns]).toBeLessThanOrEqual(1 + 1e-12);
    }
    // A feature pinned to one value at every image would be useless to the model; these images vary, and so should
    // nearly every scaled feature (count is the same for whole images, and the dark stripes have no tie patterns).
    const spread = matrix.names.map((_, c) => {
      const column = Array.from({ length: matrix.rows }, (_, r) => scaled[r * matrix.columns + c]!);
      return Math.max(...column) - Math.min(...column);
    });
    expect(spread.filter((s) => s > 0.05).length).toBeGreaterThan(matrix.columns * 0.75);
  });

  it('refuses a matrix that is not whole rows', () => {
    expect(() => applyFixedScales(new Float64Array(5), fixedScales(['firstorder_mean', 'firstorder_max'], context))).toThrow(/not whole rows of 2 features/);
  });
});
