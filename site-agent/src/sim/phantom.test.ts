import { describe, expect, it } from 'vitest';
import { checkLesionAppearance, generatePhantom, type LesionAppearance } from './phantom.js';
import { BASE_PROFILES } from './profiles.js';
import { createRng, syntheticUid } from './rng.js';

const bright: LesionAppearance = { radius: [2.8, 4.2], contrast: [0.3, 0.42] };

describe('generatePhantom', () => {
  it('is deterministic for the same seed and differs for another', () => {
    const a = generatePhantom({ size: 64, lesion: bright }, createRng(1, 'site', 3));
    const b = generatePhantom({ size: 64, lesion: bright }, createRng(1, 'site', 3));
    const c = generatePhantom({ size: 64, lesion: bright }, createRng(2, 'site', 3));
    expect(Array.from(a.intensity)).toEqual(Array.from(b.intensity));
    expect(a.lesion).toEqual(b.lesion);
    expect(Array.from(a.intensity)).not.toEqual(Array.from(c.intensity));
  });

  // Every base hospital's case mix, and a hypodense (dark) lesion, which the phantom can draw too.
  const appearances = [...BASE_PROFILES.map((p) => [p.id, p.lesionAppearance] as const), ['dark', { radius: [3, 4], contrast: [-0.34, -0.24] }] as const];
  const cases = [64, 72, 80].flatMap((size) => appearances.map(([id, appearance]) => [size, id, appearance] as const));
  it.each(cases)('draws a body on a dark background at size %i, with a %s lesion only when asked', (size, _id, appearance) => {
    for (let i = 0; i < 20; i++) {
      // Same keys: anatomy is drawn before the lesion, so the two images differ by the lesion alone.
      const normal = generatePhantom({ size, lesion: undefined }, createRng('phantom', size, i));
      const lesion = generatePhantom({ size, lesion: appearance }, createRng('phantom', size, i));
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
      // Drawn from the hospital's case mix (radius in 64-pixel units, scaled with the image).
      expect(placed.radius / (size / 64)).toBeGreaterThanOrEqual(appearance.radius[0]);
      expect(placed.radius / (size / 64)).toBeLessThanOrEqual(appearance.radius[1]);
      expect(placed.contrast).toBeGreaterThanOrEqual(appearance.contrast[0]);
      expect(placed.contrast).toBeLessThanOrEqual(appearance.contrast[1]);
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

describe('checkLesionAppearance', () => {
  it('accepts every base hospital case mix and refuses bad ranges by name', () => {
    for (const p of BASE_PROFILES) expect(() => checkLesionAppearance(p.lesionAppearance, p.id)).not.toThrow();
    expect(() => checkLesionAppearance({ radius: [4, 3], contrast: [0.2, 0.3] }, 'profile x')).toThrow(/profile x: lesion radius/);
    expect(() => checkLesionAppearance({ radius: [0.5, 3], contrast: [0.2, 0.3] }, 'p')).toThrow(/radius/);
    expect(() => checkLesionAppearance({ radius: [2, 3], contrast: [-0.2, 0.3] }, 'p')).toThrow(/all bright or all dark/);
    expect(() => checkLesionAppearance({ radius: [2, 3], contrast: [0, 0.3] }, 'p')).toThrow(/all bright or all dark/);
    expect(() => checkLesionAppearance({ radius: [2, 3], contrast: [0.4, 0.3] }, 'p')).toThrow(/contrast/);
    expect(() => checkLesionAppearance({ radius: [2, Number.NaN], contrast: [0.2, 0.3] }, 'p')).toThrow(/radius/);
  });

  it('gives base hospitals a, b and c lesions of different sizes (large, middling, small); d sees large ones too', () => {
    const [a, b, c, d] = BASE_PROFILES.map((p) => p.lesionAppearance);
    expect(d).toEqual(a);
    expect(c?.radius[1]).toBeLessThan(b?.radius[1] ?? 0);
    expect(b?.radius[1]).toBeLessThan(a?.radius[1] ?? 0);
    // The small and the large bands do not overlap at all.
    expect(c?.radius[1]).toBeLessThan(a?.radius[0] ?? 0);
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
