import { describe, expect, it } from 'vitest';
import { preprocessingSchema, type PreprocessingInput } from '@federa/shared';
import { preprocessMask, type MaskGrid } from './mask.js';
import { preprocessImage } from './preprocess.js';
import type { RasterImage } from './raster.js';
import { planGeometry } from './spatial.js';

/**
 * The image encodes where each pixel came from: red is the column centre (x + 0.5) / width, green the row
 * centre, at 16 bits. After the pipeline, red * width - 0.5 is the source column an output pixel was sampled at
 * (interpolation reproduces a linear ramp), which is what the mask must have taken its label from.
 */
function positionImage(width: number, height: number): RasterImage {
  const pixels = new Uint16Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      pixels[p] = Math.round(((x + 0.5) / width) * 65535);
      pixels[p + 1] = Math.round(((y + 0.5) / height) * 65535);
    }
  }
  return { file: 'position.png', format: 'png', width, height, channels: 3, bitDepth: 16, pixels };
}

const grid = (columns: number, rows: number, f: (x: number, y: number) => number): MaskGrid => ({
  rows,
  columns,
  labels: Uint8Array.from({ length: rows * columns }, (_, i) => f(i % columns, Math.floor(i / columns))),
});

/** An L: a vertical bar on the left and a foot to the right at the bottom, so any flip, transpose or shift shows. */
const inL = (width: number, height: number) => (x: number, y: number): boolean => {
  const bar = x >= Math.round(width * 0.15) && x < Math.round(width * 0.35) && y >= Math.round(height * 0.1) && y < Math.round(height * 0.85);
  const foot = y >= Math.round(height * 0.65) && y < Math.round(height * 0.85) && x >= Math.round(width * 0.15) && x < Math.round(width * 0.8);
  return bar || foot;
};

interface Case {
  readonly name: string;
  readonly width: number;
  readonly height: number;
  readonly size: number;
  readonly preprocessing: PreprocessingInput;
}

const CASES: readonly Case[] = [
  { name: 'stretch, shrinking', width: 61, height: 47, size: 24, preprocessing: { resize: 'stretch' } },
  { name: 'stretch, enlarging', width: 13, height: 9, size: 24, preprocessing: { resize: 'stretch' } },
  { name: 'letterbox, wide', width: 70, height: 38, size: 24, preprocessing: { resize: 'letterbox' } },
  { name: 'letterbox, tall, enlarging', width: 9, height: 15, size: 24, preprocessing: { resize: 'letterbox' } },
  { name: 'center-crop, tall', width: 33, height: 58, size: 20, preprocessing: { resize: 'center-crop' } },
  { name: 'center-crop, wide, enlarging', width: 17, height: 11, size: 20, preprocessing: { resize: 'center-crop' } },
  { name: 'letterbox after cropFraction 0.7', width: 64, height: 40, size: 24, preprocessing: { resize: 'letterbox', cropFraction: 0.7 } },
  { name: 'stretch after cropFraction 0.6, with a median filter', width: 50, height: 50, size: 16, preprocessing: { resize: 'stretch', cropFraction: 0.6, denoise: { median: 1 } } },
];

async function sampledAt(c: Case): Promise<{ sx: Float64Array; sy: Float64Array; padding: Uint8Array }> {
  const preprocessing = preprocessingSchema.parse(c.preprocessing);
  // Intensity steps would scramble the position code; masks ignore them anyway, so the image runs without.
  const spatialOnly = { ...preprocessing, denoise: 'none' as const, normalise: 'unit' as const };
  const out = await preprocessImage(positionImage(c.width, c.height), { inputSize: c.size, channels: 3, preprocessing: spatialOnly });
  const { offset, target } = planGeometry(c.width, c.height, c.size, preprocessing);
  const pixels = c.size * c.size;
  const sx = new Float64Array(pixels);
  const sy = new Float64Array(pixels);
  const padding = new Uint8Array(pixels);
  for (let i = 0; i < pixels; i++) {
    const [x, y] = [i % c.size, Math.floor(i / c.size)];
    padding[i] = x < offset.left || x >= offset.left + target.width || y < offset.top || y >= offset.top + target.height ? 1 : 0;
    sx[i] = (out[i * 3] ?? 0) * c.width - 0.5;
    sy[i] = (out[i * 3 + 1] ?? 0) * c.height - 0.5;
  }
  return { sx, sy, padding };
}

describe('preprocessMask', () => {
  for (const c of CASES) {
    it(`samples each output pixel at the source pixel the image was sampled at: ${c.name}`, async () => {
      const { sx, sy, padding } = await sampledAt(c);
      const preprocessing = preprocessingSchema.parse(c.preprocessing);
      // Labels 1.. encode the source column (and row) directly: every column and row of these sizes fits a byte.
      const columns = preprocessMask(grid(c.width, c.height, (x) => x + 1), { inputSize: c.size, preprocessing });
      const rows = preprocessMask(grid(c.width, c.height, (_, y) => y + 1), { inputSize: c.size, preprocessing });
      const { target, offset } = planGeometry(c.width, c.height, c.size, preprocessing);
      let checked = 0;
      for (let i = 0; i < c.size * c.size; i++) {
        if (padding[i] === 1) {
          expect([columns[i], rows[i]], `padding at ${i}`).toEqual([0, 0]);
          continue;
        }
        const [x, y] = [i % c.size - offset.left, Math.floor(i / c.size) - offset.top];
        // The outermost output pixels average over clamped edges, which bends the ramp; the rest must agree.
        if (x === 0 || y === 0 || x === target.width - 1 || y === target.height - 1) continue;
        expect(Math.abs((columns[i] ?? 0) - 1 - (sx[i] ?? 0)), `column at output ${i}`).toBeLessThanOrEqual(0.55);
        expect(Math.abs((rows[i] ?? 0) - 1 - (sy[i] ?? 0)), `row at output ${i}`).toBeLessThanOrEqual(0.55);
        checked++;
      }
      expect(checked).toBeGreaterThan(20);
    });

    it(`keeps an L-shaped mask on the image pixels it labels: ${c.name}`, async () => {
      const { sx, sy, padding } = await sampledAt(c);
      const preprocessing = preprocessingSchema.parse(c.preprocessing);
      const shape = inL(c.width, c.height);
      const mask = preprocessMask(grid(c.width, c.height, (x, y) => (shape(x, y) ? 2 : 0)), { inputSize: c.size, preprocessing });
      expect(mask).toHaveLength(c.size * c.size);
      expect(new Set(mask)).toEqual(new Set([0, 2]));
      const clamp = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));
      let agree = 0;
      for (let i = 0; i < mask.length; i++) {
        if (padding[i] === 1) {
          expect(mask[i]).toBe(0);
          continue;
        }
        const [x, y] = [sx[i] ?? 0, sy[i] ?? 0];
        // Where the image sample sits near the L's edge either side is fair; elsewhere the mask must say what the image shows.
        const near = [-0.6, 0.6].flatMap((dx) => [-0.6, 0.6].map((dy) => shape(clamp(Math.round(x + dx), c.width), clamp(Math.round(y + dy), c.height))));
        if (near.every((v) => v === near[0])) {
          expect(mask[i], `output pixel ${i % c.size},${Math.floor(i / c.size)} sampled at ${x.toFixed(2)},${y.toFixed(2)}`).toBe(near[0] ? 2 : 0);
          agree++;
        }
      }
      expect(agree).toBeGreaterThan(mask.length / 3);
    });
  }

  it('puts the mask where the image goes in a letterbox: the L sits in the band, the padding is background', () => {
    const mask = grid(4, 2, (x, y) => (x === 0 || y === 1 ? 1 : 0));
    const out = preprocessMask(mask, { inputSize: 8, preprocessing: preprocessingSchema.parse({ resize: 'letterbox' }) });
    const rows = Array.from({ length: 8 }, (_, r) => Array.from(out.subarray(r * 8, r * 8 + 8)).join(''));
    expect(rows).toEqual(['00000000', '00000000', '11000000', '11000000', '11111111', '11111111', '00000000', '00000000']);
  });

  it('never invents labels: only the classes of the source mask appear', () => {
    const mask = grid(37, 23, (x, y) => ((x * 7 + y * 3) % 5 === 0 ? 3 : x % 4 === 1 ? 1 : 0));
    for (const resize of ['letterbox', 'stretch', 'center-crop'] as const) {
      const out = preprocessMask(mask, { inputSize: 29, preprocessing: preprocessingSchema.parse({ resize }) });
      expect([...new Set(out)].every((v) => v === 0 || v === 1 || v === 3)).toBe(true);
    }
  });

  it('refuses a mask whose labels do not fill its grid and a bad input size', () => {
    expect(() => preprocessMask({ rows: 2, columns: 2, labels: new Uint8Array(3) }, { inputSize: 4 })).toThrow(RangeError);
    expect(() => preprocessMask(grid(2, 2, () => 0), { inputSize: 0 })).toThrow(RangeError);
  });
});
