import { describe, expect, it } from 'vitest';
import { fillEvenOdd, type Polygon } from './rasterise.js';

const count = (mask: Uint8Array): number => mask.reduce((n, v) => n + v, 0);

/** Independent reference: the classic crossing-number test at each pixel centre. */
function reference(polygons: readonly Polygon[], rows: number, columns: number): Uint8Array {
  const out = new Uint8Array(rows * columns);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      let inside = false;
      for (const polygon of polygons) {
        for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
          const [xi, yi] = polygon[i] ?? [0, 0];
          const [xj, yj] = polygon[j] ?? [0, 0];
          if (yi > r !== yj > r && c < ((xj - xi) * (r - yi)) / (yj - yi) + xi) inside = !inside;
        }
      }
      out[r * columns + c] = inside ? 1 : 0;
    }
  }
  return out;
}

describe('fillEvenOdd', () => {
  it('gives a square with corners on pixel centres exactly its area', () => {
    expect(count(fillEvenOdd([[[0, 0], [4, 0], [4, 4], [0, 4]]], 8, 8))).toBe(16);
    // Corners on pixel edges cover the same 16 pixels.
    expect(fillEvenOdd([[[-0.5, -0.5], [3.5, -0.5], [3.5, 3.5], [-0.5, 3.5]]], 8, 8)).toEqual(fillEvenOdd([[[0, 0], [4, 0], [4, 4], [0, 4]]], 8, 8));
  });

  it('is independent of winding direction and of a repeated closing vertex', () => {
    const clockwise: Polygon = [[1, 1], [6, 1], [6, 5], [1, 5]];
    const closed: Polygon = [[1, 5], [6, 5], [6, 1], [1, 1], [1, 5]];
    expect(fillEvenOdd([closed], 8, 8)).toEqual(fillEvenOdd([clockwise], 8, 8));
  });

  it('paints nothing for the zero-width channel of a keyhole contour', () => {
    // Outer square 0..6 with a hole 2..4 joined through a channel along x = 3 (down and back up).
    const keyhole: Polygon = [[0, 0], [3, 0], [3, 2], [2, 2], [2, 4], [4, 4], [4, 2], [3, 2], [3, 0], [6, 0], [6, 6], [0, 6]];
    const mask = fillEvenOdd([keyhole], 6, 6);
    expect(count(mask)).toBe(36 - 4);
    expect(mask[0 * 6 + 3]).toBe(1);
    expect(mask[2 * 6 + 2]).toBe(0);
  });

  it('clips shapes that leave the image', () => {
    expect(count(fillEvenOdd([[[-5, -5], [2, -5], [2, 2], [-5, 2]]], 4, 4))).toBe(4);
    expect(count(fillEvenOdd([[[10, 10], [12, 10], [12, 12]]], 4, 4))).toBe(0);
  });

  it('does not let floating-point noise move an edge across a pixel centre', () => {
    const noisy: Polygon = [[1e-9, -1e-9], [4.0000000001, 0], [3.9999999999, 4.0000000002], [0, 3.9999999998]];
    expect(count(fillEvenOdd([noisy], 8, 8))).toBe(16);
  });

  it('agrees with a per-pixel crossing test on irregular overlapping polygons', () => {
    const star: Polygon = Array.from({ length: 10 }, (_, i) => {
      const radius = i % 2 === 0 ? 9.3 : 3.7;
      const angle = (i * Math.PI) / 5 + 0.1;
      return [12.2 + radius * Math.cos(angle), 10.7 + radius * Math.sin(angle)] as const;
    });
    const blob: Polygon = [[3.3, 2.1], [17.8, 4.4], [9.6, 19.2], [1.2, 12.5]];
    expect(fillEvenOdd([star, blob], 22, 25)).toEqual(reference([star, blob], 22, 25));
  });

  it('ignores polygons with fewer than three vertices', () => {
    expect(count(fillEvenOdd([[[0, 0], [5, 5]]], 6, 6))).toBe(0);
  });
});
