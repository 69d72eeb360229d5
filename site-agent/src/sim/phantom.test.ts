import { describe, expect, it } from 'vitest';
import { generatePhantom } from './phantom.js';
import { createRng, syntheticUid } from './rng.js';

describe('generatePhantom', () => {
  it('is deterministic for the same seed and differs for another', () => {
    const a = generatePhantom({ size: 64, lesion: true }, createRng(1, 'site', 3));
    const b = generatePhantom({ size: 64, lesion: true }, createRng(1, 'site', 3));
    const c = generatePhantom({ size: 64, lesion: true }, createRng(2, 'site', 3));
    expect(Array.from(a.intensity)).toEqual(Array.from(b.intensity));
    expect(a.lesion).toEqual(b.lesion);
    expect(Array.from(a.intensity)).not.toEqual(Array.from(c.intensity));
  });

  it.each([64, 72, 80])('draws a body on a dark background at size %i, with a lesion only when asked', (size) => {
    for (let i = 0; i < 20; i++) {
      // Same keys: anatomy is drawn before the lesion, so the two images differ by the lesion alone.
      const normal = generatePhantom({ size, lesion: false }, createRng('phantom', size, i));
      const lesion = generatePhantom({ size, lesion: true }, createRng('phantom', size, i));
      expect(normal.intensity).toHaveLength(size * size);
      expect(normal.lesion).toBeUndefined();
      expect(normal.intensity[0]).toBeLessThan(0.1);
      expect(normal.intensity[(size / 2) * size + size / 2]).toBeGreaterThan(0.2);

      const placed = lesion.lesion;
      if (placed === undefined) throw new Error('lesion missing');
      const diff = (x: number, y: number) => {
        const k = Math.round(y) * size + Math.round(x);
        return (lesion.intensity[k] ?? NaN) - (normal.intensity[k] ?? NaN);
      };
      // Fully inside the body (mask weight 1 at the centre) and confined to about two radii.
      expect(diff(placed.x, placed.y)).toBeCloseTo(placed.contrast, 2);
      expect(normal.intensity[Math.round(placed.y) * size + Math.round(placed.x)]).toBeGreaterThan(0.15);
      let outside = 0;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          if (Math.hypot(x - placed.x, y - placed.y) > 2.2 * placed.radius) outside = Math.max(outside, Math.abs(diff(x, y)));
        }
      }
      expect(outside).toBeLessThan(1e-3);
    }
  });
});

describe('syntheticUid', () => {
  it('is a valid, deterministic 2.25 UID of at most 64 characters', () => {
    const uid = syntheticUid(1, 'hospital-a', 0, 'study');
    expect(uid).toMatch(/^2\.25\.[1-9][0-9]*$/);
    expect(uid.length).toBeLessThanOrEqual(64);
    expect(syntheticUid(1, 'hospital-a', 0, 'study')).toBe(uid);
    expect(syntheticUid(1, 'hospital-a', 0, 'series')).not.toBe(uid);
  });
});
