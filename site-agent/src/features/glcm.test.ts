import { describe, expect, it } from 'vitest';
import { GLCM_FEATURES, glcmFeatures, glcmMatrices, glcmMatrixFeatures } from './glcm.js';
import { REF_GLCM_MASK, REF_GLCM_WHOLE_8_D12, REF_MASK, REF_PLANE } from './reference.testkit.js';

/** scikit-image's graycomatrix example (docstring and tests): grey levels 0..3. */
const SK_LEVELS = [
  [0, 0, 1, 1],
  [0, 0, 1, 1],
  [0, 2, 2, 2],
  [2, 2, 3, 3],
].flat();

const symmetric = (m: number[][]): number[] => m.flatMap((row, i) => row.map((v, j) => v + m[j]![i]!));
const named = (values: Float64Array | null): Record<string, number> => Object.fromEntries(GLCM_FEATURES.map((n, i) => [n, values![i]!]));

describe('GLCM', () => {
  const [m0, m45, m90, m135] = glcmMatrices(SK_LEVELS, 4, 4, null, 4, [1]);

  it('counts the 0 degree pairs of the 4x4 example as worked by hand', () => {
    // Horizontal neighbours, both directions. Row pairs: (0,0) (0,1) (1,1) | (0,0) (0,1) (1,1) | (0,2) (2,2) (2,2) |
    // (2,2) (2,3) (3,3); each pair (i,j) adds to [i][j] and [j][i].
    expect(Array.from(m0!)).toEqual([
      4, 2, 1, 0,
      2, 4, 0, 0,
      1, 0, 6, 1,
      0, 0, 1, 2,
    ]);
  });

  it("matches scikit-image's per-angle matrices made symmetric", () => {
    // graycomatrix(image, [1], [0, pi/4, pi/2, 3pi/4], levels=4)[:, :, 0, a] from its docstring. Its offsets are
    // (round(sin a), round(cos a)): its 45 degrees is (1, 1), our 135 degrees, and its 135 degrees our 45.
    const sk0 = [[2, 2, 1, 0], [0, 2, 0, 0], [0, 0, 3, 1], [0, 0, 0, 1]];
    const sk45 = [[1, 1, 3, 0], [0, 1, 1, 0], [0, 0, 0, 2], [0, 0, 0, 0]];
    const sk90 = [[3, 0, 2, 0], [0, 2, 2, 0], [0, 0, 1, 2], [0, 0, 0, 0]];
    const sk135 = [[2, 0, 0, 0], [1, 1, 2, 0], [0, 0, 2, 1], [0, 0, 0, 0]];
    expect(Array.from(m0!)).toEqual(symmetric(sk0));
    expect(Array.from(m45!)).toEqual(symmetric(sk135));
    expect(Array.from(m90!)).toEqual(symmetric(sk90));
    expect(Array.from(m135!)).toEqual(symmetric(sk45));
    // test_output_symmetric_1: graycomatrix(image, [1], [pi/2], 4, symmetric=True).
    expect(Array.from(m90!)).toEqual([6, 0, 2, 0, 0, 4, 2, 0, 2, 2, 2, 2, 0, 0, 2, 0]);
  });

  it("reproduces scikit-image's graycoprops reference values", () => {
    const [d1a0, , d1a90] = glcmMatrices(SK_LEVELS, 4, 4, null, 4, [1]);
    const [d2a0, , d2a90] = glcmMatrices(SK_LEVELS, 4, 4, null, 4, [2]);
    const f1 = named(glcmMatrixFeatures(d1a0!, 4));
    // Docstring: contrast [[0.58333333, 1.0], [1.25, 2.75]] for distances [1, 2] x angles [0, pi/2].
    expect(f1.contrast).toBeCloseTo(0.58333333, 8);
    expect(named(glcmMatrixFeatures(d1a90!, 4)).contrast).toBeCloseTo(1, 12);
    expect(named(glcmMatrixFeatures(d2a0!, 4)).contrast).toBeCloseTo(1.25, 12);
    expect(named(glcmMatrixFeatures(d2a90!, 4)).contrast).toBeCloseTo(2.75, 12);
    // test_homogeneity, test_energy, test_correlation (d = 1 and 2), test_entropy (natural log there, log2 here).
    expect(f1.homogeneity).toBeCloseTo(0.80833333, 8);
    expect(f1.energy).toBeCloseTo(0.38188131, 8);
    expect(f1.asm).toBeCloseTo(0.38188131 ** 2, 8);
    expect(f1.correlation).toBeCloseTo(0.71953255, 8);
    expect(named(glcmMatrixFeatures(d2a0!, 4)).correlation).toBeCloseTo(0.4117647, 7);
    expect(f1.entropy! * Math.LN2).toBeCloseTo(2.09472904, 7);
  });

  it('works the remaining features of the 0 degree matrix by hand', () => {
    // p = counts / 24 (counts above). With levels numbered 1..4: mu_x = mu_y = (7·1 + 6·2 + 8·3 + 3·4) / 24 = 55/24.
    const p = [4, 2, 1, 0, 2, 4, 0, 0, 1, 0, 6, 1, 0, 0, 1, 2].map((c) => c / 24);
    const mu = 55 / 24;
    let shade = 0;
    let prominence = 0;
    let auto = 0;
    p.forEach((v, k) => {
      const i = Math.floor(k / 4) + 1;
      const j = (k % 4) + 1;
      shade += v * (i + j - 2 * mu) ** 3;
      prominence += v * (i + j - 2 * mu) ** 4;
      auto += v * i * j;
    });
    const f = named(glcmMatrixFeatures(m0!, 4));
    // |i-j| = 1: cells (1,2) (2,1) (3,4) (4,3) hold 2 + 2 + 1 + 1; |i-j| = 2: cells (1,3) (3,1) hold 1 + 1.
    expect(f.dissimilarity).toBeCloseTo((1 * 6 + 2 * 2) / 24, 12);
    expect(f.inverse_difference).toBeCloseTo((16 + 6 / 2 + 2 / 3) / 24, 12);
    expect(f.max_probability).toBeCloseTo(6 / 24, 12);
    expect(f.cluster_shade).toBeCloseTo(shade, 12);
    expect(f.cluster_prominence).toBeCloseTo(prominence, 12);
    expect(f.autocorrelation).toBeCloseTo(auto, 12);
    // Diagonal 4·1 + 4·4 + 6·9 + 2·16, off-diagonal 2·2·2 + 1·3·2 + 1·12·2.
    expect(auto).toBeCloseTo(144 / 24, 12);
  });

  it('counts only pairs with both pixels in the mask', () => {
    // Mask out the last column: horizontal pairs (r,2)-(r,3) go; 0 degrees keeps 2 pairs a row.
    const mask = Uint8Array.from([1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0]);
    const [masked0] = glcmMatrices(SK_LEVELS, 4, 4, mask, 4, [1]);
    // Pairs: (0,0) (0,1) | (0,0) (0,1) | (0,2) (2,2) | (2,2) (2,3).
    expect(Array.from(masked0!)).toEqual([4, 2, 1, 0, 2, 0, 0, 0, 1, 0, 4, 1, 0, 0, 1, 0]);
  });

  it('matches pyradiomics formulas averaged over angles (mask, 16 levels; whole image, 8 levels, distances 1 and 2)', () => {
    const masked = named(glcmFeatures(REF_PLANE, REF_MASK));
    const whole = named(glcmFeatures(REF_PLANE, null, { levels: 8, distances: [1, 2] }));
    for (const name of GLCM_FEATURES) {
      expect(masked[name], name).toBeCloseTo(REF_GLCM_MASK[name], 10);
      expect(whole[name], name).toBeCloseTo(REF_GLCM_WHOLE_8_D12[name], 10);
    }
  });

  it('gives a flat region correlation 1 and no contrast or entropy, and NaN when no pair lies inside', () => {
    const flat = named(glcmFeatures({ pixels: new Float64Array(12).fill(0.5), height: 3, width: 4 }, null));
    expect(flat).toMatchObject({ contrast: 0, correlation: 1, entropy: 0, asm: 1, energy: 1, max_probability: 1, homogeneity: 1 });
    // Level 9 of 16 (0.5·16 = 8, numbered from 1).
    expect(flat.autocorrelation).toBe(81);
    const lone = new Uint8Array(90);
    lone[45] = 1;
    expect(Array.from(glcmFeatures(REF_PLANE, lone)).every(Number.isNaN)).toBe(true);
  });

  it('refuses bad options', () => {
    expect(() => glcmFeatures(REF_PLANE, null, { levels: 1 })).toThrow(/levels/);
    expect(() => glcmFeatures(REF_PLANE, null, { distances: [0] })).toThrow(/distances/);
    expect(() => glcmMatrices([0, 4], 1, 2, null, 4)).toThrow(/not both integers/);
  });
});
