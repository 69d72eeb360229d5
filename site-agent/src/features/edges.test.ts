import { describe, expect, it } from 'vitest';
import { EDGE_FEATURES, edgeFeatures, sobelMagnitude } from './edges.js';
import { REF_EDGES_MASK, REF_EDGES_WHOLE_ABSOLUTE, REF_MASK, REF_PLANE } from './reference.testkit.js';

const plane = (rows: number[][]) => ({ pixels: rows.flat(), height: rows.length, width: rows[0]!.length });

describe('Sobel gradient and edge density', () => {
  it('measure a ramp rising s per pixel as magnitude s, NaN on the border', () => {
    // v = 0.1·col + 0.05·row: gx = 0.1, gy = 0.05.
    const ramp = plane(Array.from({ length: 4 }, (_, r) => Array.from({ length: 5 }, (_, c) => 0.1 * c + 0.05 * r)));
    const g = sobelMagnitude(ramp);
    expect(g[0]).toBeNaN();
    expect(g[4]).toBeNaN();
    expect(g[15]).toBeNaN();
    for (const i of [6, 7, 8, 11, 12, 13]) expect(g[i]).toBeCloseTo(Math.hypot(0.1, 0.05), 14);
  });

  it('work a step edge by hand', () => {
    // Vertical step 0 | 1 between columns 1 and 2: at column 1 the right column is all 1 -> gx = (1 + 2 + 1) / 8.
    const step = plane([
      [0, 0, 1, 1],
      [0, 0, 1, 1],
      [0, 0, 1, 1],
    ]);
    expect(Array.from(sobelMagnitude(step).slice(5, 7))).toEqual([0.5, 0.5]);
    // Both interior pixels sit on the edge: mean 0.5, std 0, density 1 (0.5 > 0.25·0.5).
    expect(Array.from(edgeFeatures(step, null))).toEqual([0.5, 0, 0.5, 0.5, 0.5, 1]);
    // An absolute threshold at the magnitude itself is not exceeded (strictly above).
    expect(edgeFeatures(step, null, { edgeThreshold: { absolute: 0.5 } })[5]).toBe(0);
  });

  it('match a numpy Sobel inside a mask and over the whole interior', () => {
    const masked = edgeFeatures(REF_PLANE, REF_MASK);
    const whole = edgeFeatures(REF_PLANE, null, { edgeThreshold: { absolute: 0.08 } });
    EDGE_FEATURES.forEach((name, i) => {
      expect(masked[i], name).toBeCloseTo(REF_EDGES_MASK[i]!, 12);
      expect(whole[i], name).toBeCloseTo(REF_EDGES_WHOLE_ABSOLUTE[i]!, 12);
    });
  });

  it('give a flat region zero gradient and zero density', () => {
    const flat = plane(Array.from({ length: 5 }, () => Array<number>(5).fill(0.4)));
    expect(Array.from(edgeFeatures(flat, null))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('return NaN when no masked pixel has its 3x3 neighbourhood inside the image', () => {
    const mask = new Uint8Array(90);
    mask[0] = 1;
    mask[9] = 1;
    expect(Array.from(edgeFeatures(REF_PLANE, mask)).every(Number.isNaN)).toBe(true);
    expect(Array.from(edgeFeatures(plane([[0.1, 0.2]]), null)).every(Number.isNaN)).toBe(true);
  });

  it('refuse thresholds out of range', () => {
    expect(() => edgeFeatures(REF_PLANE, null, { edgeThreshold: { relative: 1.5 } })).toThrow(/relative edge threshold/);
    expect(() => edgeFeatures(REF_PLANE, null, { edgeThreshold: { absolute: -1 } })).toThrow(/absolute edge threshold/);
  });
});
