import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DicomHeader } from '../dicom/header.js';
import { decodeDicom, readDicomFile } from '../dicom/reader.js';
import { DicomRejection } from '../dicom/rejection.js';
import { applyPaletteLut, modalityValues, normaliseToUnit, preprocessFrame, resizeUnitImage } from './preprocess.js';

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

  it('OT-PAL-8-face.dcm: keeps stored indices and exposes the 16-bit palette LUT in the header', async () => {
    const img = await load('OT-PAL-8-face.dcm');
    expect(img.header.photometricInterpretation).toBe('PALETTE COLOR');
    expect(img.pixels).toBeInstanceOf(Uint8Array);
    const lut = img.header.paletteLut;
    expect(lut?.bitsPerEntry).toBe(16);
    expect(lut?.firstMapped).toBe(0);
    expect(lut?.red).toHaveLength(200); // the descriptor declares 200 entries (0028,1101 = 200\0\16)
  });

  it('OT-PAL-8-face.dcm: maps indices through the LUT to the reference RGB', async () => {
    const img = await load('OT-PAL-8-face.dcm');
    const rgb = applyPaletteLut(img);
    const cols = img.header.columns;
    const px = (r: number, c: number): number[] => Array.from(rgb.subarray((r * cols + c) * 3, (r * cols + c) * 3 + 3));
    expect(px(0, 0)).toEqual([0, 0, 0]);
    expect(px(0, 4)).toEqual([9216, 9216, 9216]);
    expect(px(0, 9)).toEqual([18688, 18688, 18688]);
    expect(px(0, 638)).toEqual([27904, 33536, 0]);
    expect(px(479, 639)).toEqual([18688, 24320, 0]);
  });

  it('OT-PAL-8-face.dcm: grey input is BT.601 luma of the palette RGB over the 16-bit range', async () => {
    const img = await load('OT-PAL-8-face.dcm');
    const values = modalityValues(img);
    expect(values[638]).toBeCloseTo(0.299 * 27904 + 0.587 * 33536, 6);
    expect(values[4]).toBeCloseTo(9216, 6);
    const unit = normaliseToUnit(values, img.header);
    expect(unit[4]).toBeCloseTo(9216 / 65535, 6);
    const out = await preprocessFrame(img, { inputSize: 32 });
    expect(out).toHaveLength(32 * 32);
    expect(Math.max(...out)).toBeLessThanOrEqual(1);
    expect(Math.max(...out)).toBeGreaterThan(0);
  });

  it('refuses PALETTE COLOR without a usable LUT with a DicomRejection', async () => {
    const img = await load('OT-PAL-8-face.dcm');
    const bare = { ...img, header: { ...img.header, paletteLut: undefined } };
    await expect(preprocessFrame(bare, { inputSize: 32 })).rejects.toMatchObject({ reason: 'unsupported-pixel-format', file: 'OT-PAL-8-face.dcm' });
    await expect(preprocessFrame(bare, { inputSize: 32 })).rejects.toBeInstanceOf(DicomRejection);
  });

  it('drops a palette LUT whose descriptors disagree or whose data length does not fit the entry size', () => {
    const original = readFileSync(join(testdata, 'OT-PAL-8-face.dcm'));
    // Descriptor values start 8 bytes after the tag in both explicit (tag, VR, 2-byte length) and implicit VR.
    const withBlueBits = (bits: number, descriptorTag: number[]): Buffer => {
      const bytes = Buffer.from(original);
      const at = bytes.indexOf(Buffer.from(descriptorTag));
      bytes.writeUInt16LE(bits, at + 8 + 4);
      return bytes;
    };
    const blue = [0x28, 0x00, 0x03, 0x11];
    // Channels disagree on bits per entry: corrupt, so no LUT.
    expect(decodeDicom(withBlueBits(8, blue), { file: 'pal.dcm' }).header.paletteLut).toBeUndefined();
    // All three claim 8-bit entries but hold 16-bit words: ambiguous, so no LUT rather than a guess.
    let all = Buffer.from(original);
    for (const tag of [[0x28, 0x00, 0x01, 0x11], [0x28, 0x00, 0x02, 0x11], blue]) {
      const at = all.indexOf(Buffer.from(tag));
      all = Buffer.from(all);
      all.writeUInt16LE(8, at + 12);
    }
    expect(decodeDicom(all, { file: 'pal.dcm' }).header.paletteLut).toBeUndefined();
    // Untouched, the same bytes yield a LUT, so the checks above fail for the stated reason only.
    expect(decodeDicom(Buffer.from(original), { file: 'pal.dcm' }).header.paletteLut).toBeDefined();
  });

  it('parametric_map_float.dcm: float pixels go through min-max normalisation', async () => {
    const img = await load('parametric_map_float.dcm');
    const out = await preprocessFrame(img, { inputSize: 128 });
    expect(out).toHaveLength(128 * 128);
    expect(Math.min(...out)).toBe(0);
    expect(Math.max(...out)).toBe(1);
  });

  it('liver_1frame.dcm: a 1-bit mask becomes exactly 0 and 1', async () => {
    const img = await load('liver_1frame.dcm');
    const out = await preprocessFrame(img, { inputSize: 512 });
    expect(out[155 * 512 + 181]).toBe(1);
    expect(out[155 * 512 + 180]).toBe(0);
  });
});

describe('applyPaletteLut', () => {
  it('offsets by the first mapped value and clamps indices outside the table', () => {
    const header = {
      rows: 1,
      columns: 4,
      samplesPerPixel: 1,
      photometricInterpretation: 'PALETTE COLOR',
      paletteLut: { firstMapped: 10, bitsPerEntry: 8, red: Uint16Array.of(1, 2, 3), green: Uint16Array.of(4, 5, 6), blue: Uint16Array.of(7, 8, 9) },
    } as unknown as DicomHeader;
    const rgb = applyPaletteLut({ file: 'p.dcm', header, pixels: Uint8Array.of(5, 10, 11, 200) });
    expect(Array.from(rgb)).toEqual([1, 4, 7, 1, 4, 7, 2, 5, 8, 3, 6, 9]);
    // 8-bit entries normalise over 255, not over the index range.
    const unit = normaliseToUnit(modalityValues({ file: 'p.dcm', header, pixels: Uint8Array.of(12, 12, 12, 12) }), header);
    expect(unit[0]).toBeCloseTo((0.299 * 3 + 0.587 * 6 + 0.114 * 9) / 255, 6);
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
