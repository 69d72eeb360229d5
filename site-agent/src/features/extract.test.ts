import { describe, expect, it } from 'vitest';
import { edgeFeatures } from './edges.js';
import { extractFeatures, featureMatrix, featureNames, parseFeatureOptions } from './extract.js';
import { firstOrderFeatures } from './first-order.js';
import { glcmFeatures } from './glcm.js';
import { lbpFeatures } from './lbp.js';
import { FeatureInputError } from './region.js';
import { REF_FIRST_ORDER_MASK, REF_GLCM_MASK, REF_HEIGHT, REF_MASK, REF_PIXELS, REF_WIDTH } from './reference.testkit.js';

const image = { pixels: Float32Array.from(REF_PIXELS), height: REF_HEIGHT, width: REF_WIDTH, channels: 1 };

describe('feature extraction', () => {
  it('names 47 features a channel in a fixed order, prefixed per channel when there are several', () => {
    const one = featureNames(1);
    expect(one).toHaveLength(47);
    expect(one.slice(0, 3)).toEqual(['firstorder_count', 'firstorder_mean', 'firstorder_variance']);
    expect(one[19]).toBe('edges_gradient_mean');
    expect(one[25]).toBe('glcm_contrast');
    expect(one[37]).toBe('lbp_riu2_0');
    expect(one[46]).toBe('lbp_riu2_9');
    const two = featureNames(2);
    expect(two).toHaveLength(94);
    expect(two[0]).toBe('c0_firstorder_count');
    expect(two[47]).toBe('c1_firstorder_count');
    expect(new Set(two).size).toBe(94);
  });

  it('computes only the groups asked for, in the fixed order whatever order they are listed in', () => {
    const full = extractFeatures(image, REF_MASK);
    const some = extractFeatures(image, REF_MASK, { groups: ['lbp', 'first-order'] });
    expect(some.names).toEqual(featureNames(1, ['first-order', 'lbp']));
    expect(some.names).toHaveLength(19 + 10);
    expect(Array.from(some.values)).toEqual(some.names.map((name) => full.values[full.names.indexOf(name)]));
    // Per channel: c0's groups, then c1's.
    expect(featureNames(2, ['edges']).slice(5, 7)).toEqual(['c0_edges_density', 'c1_edges_gradient_mean']);
    expect(() => parseFeatureOptions({ groups: ['glcm', 'glcm'] })).toThrow(/groups: lists a group twice/);
  });

  it('concatenates first-order, edge, GLCM and LBP values in that order', () => {
    const { names, values } = extractFeatures(image, REF_MASK);
    const plane = { pixels: image.pixels, height: REF_HEIGHT, width: REF_WIDTH };
    const expected = [
      ...firstOrderFeatures(plane, REF_MASK),
      ...edgeFeatures(plane, REF_MASK),
      ...glcmFeatures(plane, REF_MASK),
      ...lbpFeatures(plane, REF_MASK),
    ];
    expect(Array.from(values)).toEqual(expected);
    // float32 pixels move the reference values (computed in float64) by rounding only.
    expect(values[names.indexOf('firstorder_mean')]).toBeCloseTo(REF_FIRST_ORDER_MASK.mean, 6);
    expect(values[names.indexOf('glcm_correlation')]).toBeCloseTo(REF_GLCM_MASK.correlation, 6);
  });

  it('extracts each channel of an interleaved image like a single-channel image', () => {
    const size = REF_HEIGHT * REF_WIDTH;
    const interleaved = new Float32Array(size * 2);
    const inverted = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      interleaved[2 * i] = image.pixels[i]!;
      inverted[i] = 1 - image.pixels[i]!;
      interleaved[2 * i + 1] = inverted[i]!;
    }
    const both = extractFeatures({ ...image, pixels: interleaved, channels: 2 }, REF_MASK).values;
    expect(Array.from(both.subarray(0, 47))).toEqual(Array.from(extractFeatures(image, REF_MASK).values));
    expect(Array.from(both.subarray(47))).toEqual(Array.from(extractFeatures({ ...image, pixels: inverted }, REF_MASK).values));
  });

  it('selects one label of a label map with maskLabel, any non-zero label without', () => {
    const labels = Uint8Array.from(REF_MASK, (v, i) => (v === 0 ? 0 : i < 45 ? 1 : 2));
    const lower = Uint8Array.from(labels, (v) => (v === 2 ? 1 : 0));
    expect(extractFeatures(image, labels, { maskLabel: 2 }).values).toEqual(extractFeatures(image, lower).values);
    expect(extractFeatures(image, labels).values).toEqual(extractFeatures(image, REF_MASK).values);
  });

  it('refuses wrong sizes, non-finite pixels and empty masks with where and why', () => {
    expect(() => extractFeatures({ ...image, height: 8 }, null)).toThrow(/has 90 values, expected 8x10x1/);
    const bad = Float32Array.from(image.pixels);
    bad[23] = Number.NaN;
    expect(() => extractFeatures({ ...image, pixels: bad }, null)).toThrow(/pixel \(row 2, column 3\) channel 0 is NaN/);
    expect(() => extractFeatures(image, new Uint8Array(90))).toThrow(/selects no pixel/);
    expect(() => extractFeatures(image, REF_MASK, { maskLabel: 3 })).toThrow(/no pixel with label 3/);
    expect(() => extractFeatures(image, new Uint8Array(12))).toThrow(FeatureInputError);
  });

  it('refuses a region too small for some features by default, or returns NaN for them on request', () => {
    const corner = new Uint8Array(90);
    corner[0] = 1;
    expect(() => extractFeatures(image, corner)).toThrow(/too small to define edges_gradient_mean, .*\(28 in all\)/);
    const { names, values } = extractFeatures(image, corner, { undefinedValues: 'nan' });
    const undefinedNames = names.filter((_, i) => Number.isNaN(values[i]));
    expect(undefinedNames).toHaveLength(6 + 12 + 10);
    expect(undefinedNames.every((n) => /^(edges|glcm|lbp)_/.test(n))).toBe(true);
    expect(values[names.indexOf('firstorder_count')]).toBe(1);
  });

  it('validates options from outside with zod, filling in defaults', () => {
    expect(parseFeatureOptions(undefined)).toEqual({
      histogramBins: 32,
      glcmLevels: 16,
      glcmDistances: [1],
      edgeThreshold: { relative: 0.25 },
      undefinedValues: 'error',
    });
    expect(() => parseFeatureOptions({ histogramBins: 1 })).toThrow(/histogramBins/);
    expect(() => parseFeatureOptions({ glcmLevel: 8 })).toThrow(/feature options are invalid/);
    expect(() => parseFeatureOptions({ edgeThreshold: { relative: 2 } })).toThrow(/edgeThreshold/);
  });

  it('builds a dataset matrix row by row, with per-image masks (null: whole image)', () => {
    const size = REF_HEIGHT * REF_WIDTH;
    const images = new Float32Array(size * 3);
    images.set(image.pixels, 0);
    for (let i = 0; i < size; i++) images[size + i] = 1 - image.pixels[i]!;
    for (let i = 0; i < size; i++) images[2 * size + i] = image.pixels[i]! * 0.5;
    const data = { images, labels: Int32Array.from([0, 1, 0]), count: 3, height: REF_HEIGHT, width: REF_WIDTH, channels: 1 };
    const masks = [REF_MASK, null, REF_MASK];
    const matrix = featureMatrix(data, masks);
    expect(matrix).toMatchObject({ rows: 3, columns: 47 });
    expect(Array.from(matrix.labels)).toEqual([0, 1, 0]);
    for (let n = 0; n < 3; n++) {
      const row = extractFeatures({ ...image, pixels: images.subarray(n * size, (n + 1) * size) }, masks[n]!).values;
      expect(Array.from(matrix.values.subarray(n * 47, (n + 1) * 47))).toEqual(Array.from(row));
    }
    expect(() => featureMatrix(data, [REF_MASK])).toThrow(/1 masks for 3 images/);
    expect(() => featureMatrix(data, [REF_MASK, new Uint8Array(90), null])).toThrow(/^image 1: the mask selects no pixel/);
    expect(() => featureMatrix({ ...data, count: 4 }, undefined)).toThrow(/expected 4 images/);
  });
});
