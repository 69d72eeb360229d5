import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DicomHeader } from '../dicom/header.js';
import { readDicomFile } from '../dicom/reader.js';
import { DicomRejection } from '../dicom/rejection.js';
import { normaliseToUnit, preprocessFrame, resizeUnitImage } from './preprocess.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');
const load = (name: string) => readDicomFile(join(testdata, name), { file: name });

/** DICOM linear VOI window (PS3.3 C.11.2.1.2.1) mapped to [0, 1]. */
const windowed = (x: number, c: number, w: number): number => Math.min(1, Math.max(0, (x - (c - 0.5)) / (w - 1) + 0.5));

describe('preprocessFrame on real files', () => {
  it('MR_small.dcm: clamps to the file window (600/1600)', async () => {
    const img = await load('MR_small.dcm');
    const out = await preprocessFrame(img, { inputSize: 64 }); // same size: no resampling
    expect(out).toHaveLength(64 * 64);
    expect(out[0 * 64 + 31]).toBeCloseTo(windowed(422, 600, 1600), 6);
    expect(out[63 * 64 + 63]).toBeCloseTo(windowed(862, 600, 1600), 6);
    // 2145 is above the window's upper edge (1399) and saturates.
    const brightest = img.pixels.indexOf(2145);
    expect(out[brightest]).toBe(1);
  });

  it('CT_small.dcm: no window, so min-max over the rescaled frame', async () => {
    const img = await load('CT_small.dcm');
    const out = await preprocessFrame(img, { inputSize: 128 });
    // Stored min 128 / max 2191; the -1024 intercept shifts both ends and cancels out.
    expect(out[24 * 128 + 36]).toBeCloseTo((520 - 128) / (2191 - 128), 6);
    expect(Math.min(...out)).toBe(0);
    expect(Math.max(...out)).toBe(1);
  });

  it('pcir_CR1_6154.dcm: MONOCHROME1 is inverted after rescale and window', async () => {
    const img = await load('pcir_CR1_6154.dcm');
    const out = await preprocessFrame(img, { inputSize: 16 });
    const stored = img.pixels[0] ?? 0;
    expect(out[0]).toBeCloseTo(1 - windowed(stored * 0.684 + 200, 1600, 2800), 6);
    // Highest stored value is the darkest pixel in MONOCHROME1.
    const darkest = img.pixels.indexOf(2802);
    expect(out[darkest]).toBe(Math.min(...out));
  });

  it('SC_rgb.dcm: colour becomes luma on the full 8-bit range', async () => {
    const img = await load('SC_rgb.dcm');
    const out = await preprocessFrame(img, { inputSize: 100 });
    expect(out[5 * 100 + 50]).toBeCloseTo(0.299, 5); // pure red bar
    expect(out[95 * 100 + 50]).toBeCloseTo(1, 5); // white bar
  });

  it('JPEG2000_UNC.dcm (1024 x 256): letterboxed into a square with black borders', async () => {
    const img = await load('JPEG2000_UNC.dcm');
    const out = await preprocessFrame(img, { inputSize: 64 });
    expect(out).toHaveLength(64 * 64);
    // Content is 16 columns wide, centred: columns 0..23 and 40..63 are border.
    for (let r = 0; r < 64; r++) {
      expect(out[r * 64 + 2]).toBe(0);
      expect(out[r * 64 + 61]).toBe(0);
    }
    expect(Math.max(...out)).toBeGreaterThan(0.5);
  });

  it('refuses PALETTE COLOR (needs its LUT) with a DicomRejection', async () => {
    const img = await load('OT-PAL-8-face.dcm');
    await expect(preprocessFrame(img, { inputSize: 32 })).rejects.toMatchObject({ reason: 'unsupported-pixel-format', file: 'OT-PAL-8-face.dcm' });
    await expect(preprocessFrame(img, { inputSize: 32 })).rejects.toBeInstanceOf(DicomRejection);
  });
});

describe('resizeUnitImage', () => {
  it('keeps 16-bit precision and a single channel (no silent 8-bit RGB)', async () => {
    const side = 64;
    const ramp = new Float32Array(side * side);
    for (let i = 0; i < ramp.length; i++) ramp[i] = i / (ramp.length - 1);
    const out = await resizeUnitImage(ramp, side, side, 48);
    expect(out).toHaveLength(48 * 48);
    // 8-bit output could hold at most 256 distinct levels.
    expect(new Set(out).size).toBeGreaterThan(1500);
    expect(Math.min(...out)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...out)).toBeLessThanOrEqual(1);
  });

  it('preserves a flat grey level closely when upsampling', async () => {
    const out = await resizeUnitImage(new Float32Array(20 * 20).fill(0.3141), 20, 20, 64);
    const centre = out[32 * 64 + 32] ?? NaN;
    expect(Math.abs(centre - 0.3141)).toBeLessThan(1e-3);
  });
});

describe('normaliseToUnit', () => {
  const base = { photometricInterpretation: 'MONOCHROME2', samplesPerPixel: 1, bitsStored: 12, windowCenter: undefined, windowWidth: undefined } as DicomHeader;

  it('gives zeros for a constant frame instead of NaN', () => {
    expect(Array.from(normaliseToUnit(Float64Array.from([7, 7, 7]), base))).toEqual([0, 0, 0]);
  });

  it('treats a window of width 1 as a threshold', () => {
    const h = { ...base, windowCenter: 10, windowWidth: 1 } as DicomHeader;
    expect(Array.from(normaliseToUnit(Float64Array.from([9, 9.5, 10, 11]), h))).toEqual([0, 0, 1, 1]);
  });
});
