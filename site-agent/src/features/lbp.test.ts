import { describe, expect, it } from 'vitest';
import { LBP_BINS, lbpCodes, lbpFeatures } from './lbp.js';
import { REF_MASK, REF_PLANE } from './reference.testkit.js';

/** scikit-image's TestLBP image (tests/skimage2/feature/test_texture.py). */
const SK_IMAGE = [
  [255, 6, 255, 0, 141, 0],
  [48, 250, 204, 166, 223, 63],
  [8, 0, 159, 50, 255, 30],
  [167, 255, 63, 40, 128, 255],
  [0, 255, 30, 34, 255, 24],
  [146, 241, 255, 0, 189, 126],
];
/** Its test_uniform reference: local_binary_pattern(image, 8, 1, 'uniform'). */
const SK_UNIFORM = [
  [0, 7, 0, 8, 2, 8],
  [5, 0, 9, 9, 1, 3],
  [9, 8, 2, 7, 0, 6],
  [2, 1, 5, 6, 5, 0],
  [8, 1, 8, 9, 0, 7],
  [2, 9, 0, 8, 1, 2],
];

const plane = (rows: number[][]) => ({ pixels: rows.flat(), height: rows.length, width: rows[0]!.length });

describe('uniform LBP (P = 8, R = 1)', () => {
  it("reproduces scikit-image's method='uniform' reference codes, border included", () => {
    expect(Array.from(lbpCodes(plane(SK_IMAGE)))).toEqual(SK_UNIFORM.flat());
    // Scaling to [0, 1] changes no comparison.
    expect(Array.from(lbpCodes(plane(SK_IMAGE.map((r) => r.map((v) => v / 255)))))).toEqual(SK_UNIFORM.flat());
  });

  it('histograms only interior pixels of the region, normalised', () => {
    // Interior 4x4 of the reference codes: 0 9 9 1 / 8 2 7 0 / 1 5 6 5 / 1 8 9 0.
    const h = lbpFeatures(plane(SK_IMAGE.map((r) => r.map((v) => v / 255))), null);
    expect(Array.from(h, (v) => v * 16)).toEqual([3, 3, 1, 0, 0, 2, 1, 1, 2, 3]);
    // Mask the top-left 2x2 of the interior plus a border pixel (ignored): codes 0, 9, 8, 2.
    const mask = new Uint8Array(36);
    for (const i of [0, 7, 8, 13, 14]) mask[i] = 1;
    expect(Array.from(lbpFeatures(plane(SK_IMAGE), mask), (v) => v * 4)).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 1, 1]);
  });

  it('works interpolated diagonals by hand', () => {
    // Centre 0.5 with right and up at 1: the up-right sample is 0.70711·0.29289 + 0.29289·(0.29289·0.5 + 0.70711)
    // ≈ 0.457 < 0.5, so the bits read 1 0 1 0 0 0 0 0: three transitions, non-uniform (9).
    expect(lbpCodes(plane([[0, 1, 0], [0, 0.5, 1], [0, 0, 0]]))[4]).toBe(9);
    // With the up-right corner at 1 too, that sample is ≈ 0.957: bits 1 1 1 0 0 0 0 0, uniform with 3 ones.
    expect(lbpCodes(plane([[0, 1, 1], [0, 0.5, 1], [0, 0, 0]]))[4]).toBe(3);
    // A local minimum sets every bit (8), a local maximum none (0).
    expect(lbpCodes(plane([[1, 1, 1], [1, 0, 1], [1, 1, 1]]))[4]).toBe(8);
    expect(lbpCodes(plane([[0, 0, 0], [0, 1, 0], [0, 0, 0]]))[4]).toBe(0);
  });

  it('reads a flat area as uniform (8) for every value, where exact comparison would flip on rounding', () => {
    for (let k = 0; k <= 255; k++) {
      const flat = { pixels: new Float64Array(20 * 20).fill(k / 255), height: 20, width: 20 };
      const h = lbpFeatures(flat, null);
      expect(h[8], `value ${k}/255`).toBe(1);
    }
  });

  it('is rotation invariant: a 90 degree turn keeps the histogram', () => {
    const { pixels, height, width } = REF_PLANE;
    const turned = new Float64Array(height * width);
    // (r, c) -> (c, height - 1 - r): the turned image is width x height.
    for (let r = 0; r < height; r++) for (let c = 0; c < width; c++) turned[c * height + (height - 1 - r)] = pixels[r * width + c]!;
    const a = lbpFeatures(REF_PLANE, null);
    const b = lbpFeatures({ pixels: turned, height: width, width: height }, null);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(a.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
    expect(a).toHaveLength(LBP_BINS);
  });

  it('gives NaN when no pixel of the region is interior', () => {
    const mask = new Uint8Array(90);
    mask[0] = 1;
    expect(Array.from(lbpFeatures(REF_PLANE, mask)).every(Number.isNaN)).toBe(true);
    expect(lbpFeatures(REF_PLANE, REF_MASK).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 12);
  });
});
