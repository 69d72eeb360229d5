import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { preprocessingSchema, type PreprocessingInput } from '@federa/shared';
import type { DicomHeader } from '../dicom/header.js';
import { readDicomFile } from '../dicom/reader.js';
import { equaliseHistogram, zScore } from './contrast.js';
import { pipelineHash, preprocessImage, type FrameSource } from './preprocess.js';
import { decodeRaster, sniffRasterFormat, type RasterImage } from './raster.js';
import { ImageRejection } from './rejection.js';
import { planGeometry } from './spatial.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');

function dicom(pixels: number[], over: Partial<DicomHeader> = {}): FrameSource {
  const header: DicomHeader = {
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    transferSyntaxName: 'Explicit VR Little Endian',
    sopClassUid: undefined,
    sopInstanceUid: undefined,
    seriesInstanceUid: undefined,
    studyInstanceUid: undefined,
    modality: 'CT',
    rows: 2,
    columns: 2,
    samplesPerPixel: 1,
    photometricInterpretation: 'MONOCHROME2',
    planarConfiguration: 0,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 1,
    signed: true,
    numberOfFrames: 1,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: undefined,
    windowWidth: undefined,
    ...over,
  };
  return { file: 'synthetic.dcm', header, pixels: header.signed ? Int16Array.from(pixels) : Uint16Array.from(pixels) };
}

function grey8(width: number, height: number, values: number[]): RasterImage {
  return { file: 'synthetic.png', format: 'png', width, height, channels: 1, bitDepth: 8, pixels: Uint8Array.from(values) };
}

const run = (source: FrameSource | RasterImage, inputSize: number, preprocessing: PreprocessingInput = {}, channels: 1 | 3 = 1) =>
  preprocessImage(source, { inputSize, channels, preprocessing: preprocessingSchema.parse(preprocessing) });

const rows = (out: Float32Array, width: number): number[][] =>
  Array.from({ length: out.length / width }, (_, r) => Array.from(out.subarray(r * width, (r + 1) * width)));

describe('windows', () => {
  // Stored = HU + 1024, as CT scanners usually write it.
  const ct = (hu: number[], over: Partial<DicomHeader> = {}) => dicom(hu.map((v) => v + 1024), { rescaleIntercept: -1024, ...over });

  it('ct-lung (-600/1500): the window edges go to 0 and 1, the centre to one half', async () => {
    // DICOM linear function: y = (x - (c - 0.5)) / (w - 1) + 0.5, clamped.
    const out = await run(ct([-1350, -600, -1000, 150]), 2, { window: 'ct-lung' });
    expect(out[0]).toBe(0);
    expect(out[1]).toBeCloseTo(0.5 / 1499 + 0.5, 5); // 0.500334
    expect(out[2]).toBeCloseTo(-399.5 / 1499 + 0.5, 5); // 0.233489
    expect(out[3]).toBe(1);
  });

  it('ct-soft-tissue (40/400), ct-brain (40/80), ct-bone (400/1800), ct-mediastinum (50/350) on known HU', async () => {
    expect(Array.from(await run(ct([-1000, 40, 100, 1000]), 2, { window: 'ct-soft-tissue' }))).toEqual([0, expect.closeTo(0.50125, 5), expect.closeTo(60.5 / 399 + 0.5, 5), 1]);
    expect(Array.from(await run(ct([0, 40, 60, 81]), 2, { window: 'ct-brain' }))).toEqual([0, expect.closeTo(0.50633, 5), expect.closeTo(20.5 / 79 + 0.5, 5), 1]);
    expect(Array.from(await run(ct([-500, 400, 1000, 1400]), 2, { window: 'ct-bone' }))).toEqual([0, expect.closeTo(0.50028, 5), expect.closeTo(600.5 / 1799 + 0.5, 5), 1]);
    expect(Array.from(await run(ct([-126, 50, 100, 226]), 2, { window: 'ct-mediastinum' }))).toEqual([0, expect.closeTo(0.50143, 5), expect.closeTo(50.5 / 349 + 0.5, 5), 1]);
  });

  it('an explicit window overrides the one in the file; "file" uses the file; "none" is min-max', async () => {
    const source = ct([0, 100, 200, 300], { windowCenter: 150, windowWidth: 101 });
    expect(Array.from(await run(source, 2, { window: 'file' }))).toEqual([0, expect.closeTo(0.005, 5), 1, 1]);
    expect(Array.from(await run(source, 2, { window: { center: 150, width: 301 } }))).toEqual([
      expect.closeTo(-149.5 / 300 + 0.5, 5),
      expect.closeTo(-49.5 / 300 + 0.5, 5),
      expect.closeTo(50.5 / 300 + 0.5, 5),
      1,
    ]);
    expect(Array.from(await run(source, 2, { window: 'none' }))).toEqual([0, expect.closeTo(1 / 3, 6), expect.closeTo(2 / 3, 6), 1]);
  });

  it('MONOCHROME1 is inverted after the preset window', async () => {
    const out = await run(ct([-1350, -600, -1000, 150], { photometricInterpretation: 'MONOCHROME1' }), 2, { window: 'ct-lung' });
    expect(Array.from(out)).toEqual([1, expect.closeTo(0.5 - 0.5 / 1499, 5), expect.closeTo(0.5 + 399.5 / 1499, 5), 0]);
  });

  it('CT_small.dcm under ct-lung: stored 520 is -504 HU', async () => {
    const img = await readDicomFile(join(testdata, 'CT_small.dcm'));
    const out = await run(img, 128, { window: 'ct-lung' });
    expect(out[24 * 128 + 36]).toBeCloseTo(96.5 / 1499 + 0.5, 5);
  });

  it('refuses CT presets on other modalities and declared windows on colour, palette and PNG/JPEG images', async () => {
    const mr = await readDicomFile(join(testdata, 'MR_small.dcm'));
    await expect(run(mr, 64, { window: 'ct-lung' })).rejects.toMatchObject({ reason: 'window-not-applicable', message: expect.stringMatching(/CT only; this image's modality is MR/) });
    // An explicit window is in the modality's own units, so MR may declare one.
    await expect(run(mr, 64, { window: { center: 600, width: 1600 } })).resolves.toHaveLength(64 * 64);
    const rgb = dicom([255, 0, 0, 0, 0, 255], { photometricInterpretation: 'RGB', samplesPerPixel: 3, rows: 1, columns: 2, bitsStored: 8, signed: false, modality: 'XC' });
    await expect(run(rgb, 2, { window: { center: 100, width: 50 } })).rejects.toBeInstanceOf(ImageRejection);
    await expect(run(grey8(2, 2, [0, 1, 2, 3]), 2, { window: 'ct-bone' })).rejects.toMatchObject({ reason: 'window-not-applicable' });
  });
});

describe('colour as the model asks', () => {
  const rgb = dicom([255, 0, 0, 0, 0, 255], { photometricInterpretation: 'RGB', samplesPerPixel: 3, rows: 1, columns: 2, bitsStored: 8, signed: false, modality: 'XC' });

  it('RGB stays RGB for a 3-channel model and becomes BT.601 luma for a grey one', async () => {
    expect(Array.from(await run(rgb, 2, { resize: 'stretch' }, 3)).slice(0, 6)).toEqual([1, 0, 0, 0, 0, 1].map((v) => expect.closeTo(v, 4)));
    const grey = await run(rgb, 2, { resize: 'stretch' }, 1);
    expect(Array.from(grey.slice(0, 2))).toEqual([expect.closeTo(0.299, 3), expect.closeTo(0.114, 3)]);
  });

  it('YBR_FULL converts to RGB with the full-range inverse of PS3.3 C.7.6.3.1.2', async () => {
    const ybr = dicom([100, 128, 178, 50, 200, 128], { photometricInterpretation: 'YBR_FULL', samplesPerPixel: 3, rows: 1, columns: 2, bitsStored: 8, signed: false, modality: 'XC' });
    const out = await run(ybr, 2, { resize: 'stretch' }, 3);
    // R = Y + 1.402 (Cr - 128), G = Y - 0.344136 (Cb - 128) - 0.714136 (Cr - 128), B = Y + 1.772 (Cb - 128)
    expect(Array.from(out.slice(0, 6))).toEqual([
      expect.closeTo(170.1 / 255, 4),
      expect.closeTo(64.2932 / 255, 4),
      expect.closeTo(100 / 255, 4),
      expect.closeTo(50 / 255, 4),
      expect.closeTo(25.2222 / 255, 4),
      expect.closeTo(177.584 / 255, 4),
    ]);
    // A grey model takes Y, which is already luma.
    expect(Array.from((await run(ybr, 2, { resize: 'stretch' }, 1)).slice(0, 2))).toEqual([expect.closeTo(100 / 255, 4), expect.closeTo(50 / 255, 4)]);
  });

  it('palette colour goes through its LUT to RGB', async () => {
    const palette = dicom([0, 1], {
      photometricInterpretation: 'PALETTE COLOR',
      rows: 1,
      columns: 2,
      bitsStored: 8,
      signed: false,
      modality: 'US',
      paletteLut: { firstMapped: 0, bitsPerEntry: 8, red: Uint16Array.of(255, 0), green: Uint16Array.of(51, 102), blue: Uint16Array.of(0, 255) },
    });
    expect(Array.from((await run(palette, 2, { resize: 'stretch' }, 3)).slice(0, 6))).toEqual([1, 0.2, 0, 0, 0.4, 1].map((v) => expect.closeTo(v, 4)));
  });

  it('grey is replicated into three identical channels', async () => {
    const img = await readDicomFile(join(testdata, 'MR_small.dcm'));
    const grey = await preprocessImage(img, { inputSize: 48 });
    const three = await preprocessImage(img, { inputSize: 48, channels: 3 });
    expect(three).toHaveLength(48 * 48 * 3);
    for (let i = 0; i < grey.length; i++) {
      expect(three[i * 3]).toBe(grey[i]);
      expect(three[i * 3 + 1]).toBe(grey[i]);
      expect(three[i * 3 + 2]).toBe(grey[i]);
    }
  });

  it('SC_rgb.dcm keeps its colour bars for a 3-channel model', async () => {
    const img = await readDicomFile(join(testdata, 'SC_rgb.dcm'));
    const out = await preprocessImage(img, { inputSize: 100, channels: 3 });
    const px = (r: number, c: number) => Array.from(out.slice((r * 100 + c) * 3, (r * 100 + c) * 3 + 3));
    expect(px(5, 50)).toEqual([1, 0, 0].map((v) => expect.closeTo(v, 4))); // red bar
    expect(px(95, 50)).toEqual([1, 1, 1].map((v) => expect.closeTo(v, 4))); // white bar
  });
});

describe('geometry', () => {
  // Columns 0.1 .. 0.4 on two rows: window "file" on a PNG is the full 8-bit range.
  const wide = grey8(4, 2, [25.5, 51, 76.5, 102, 25.5, 51, 76.5, 102].map(Math.round));
  const value = (v: number) => expect.closeTo(Math.round(v * 255) / 255, 6);

  it('center-crop keeps the central square of the shorter side', async () => {
    expect(rows(await run(wide, 2, { resize: 'center-crop' }), 2)).toEqual([
      [value(0.2), value(0.3)],
      [value(0.2), value(0.3)],
    ]);
    expect(planGeometry(640, 480, 224, { resize: 'center-crop', cropFraction: 1 }).crop).toEqual({ left: 80, top: 0, width: 480, height: 480 });
  });

  it('letterbox pads above and below a wide image with zeros; stretch fills the square', async () => {
    const boxed = rows(await run(wide, 4, { resize: 'letterbox' }), 4);
    expect(boxed[0]).toEqual([0, 0, 0, 0]);
    expect(boxed[1]).toEqual([value(0.1), value(0.2), value(0.3), value(0.4)]);
    expect(boxed[3]).toEqual([0, 0, 0, 0]);
    const stretched = rows(await run(wide, 4, { resize: 'stretch' }), 4);
    for (const row of stretched) expect(Math.min(...row)).toBeGreaterThan(0.05);
  });

  it('enlarging keeps pixel centres: columns survive a vertical stretch, and a step stays symmetric', async () => {
    const ramp = [0, 32, 64, 96, 128, 160, 192, 224];
    const stretched = rows(await run(grey8(8, 1, ramp), 8, { resize: 'stretch' }), 8);
    for (const row of stretched) expect(row).toEqual(ramp.map((v) => value(v / 255)));
    // [0, 1] enlarged to 4: Mitchell weights give 0, m(0.75) + m(1.75), its mirror, 1.
    const step = rows(await run(grey8(2, 2, [0, 255, 0, 255]), 4), 4)[0] ?? [];
    expect(step).toEqual([0, expect.closeTo(0.2413, 3), expect.closeTo(0.7587, 3), 1]);
  });

  it('cropFraction keeps the central part of each side', async () => {
    const square = grey8(4, 4, Array.from({ length: 16 }, (_, i) => i * 10));
    expect(rows(await run(square, 2, { cropFraction: 0.5 }), 2)).toEqual([
      [value(50 / 255), value(60 / 255)],
      [value(90 / 255), value(100 / 255)],
    ]);
    expect(planGeometry(1000, 500, 64, { resize: 'letterbox', cropFraction: 0.9 })).toEqual({
      crop: { left: 50, top: 25, width: 900, height: 450 },
      target: { width: 64, height: 32 },
      offset: { left: 0, top: 16 },
      size: 64,
    });
  });
});

describe('denoising', () => {
  const spiked = () => {
    const values = new Array<number>(49).fill(51);
    values[24] = 255; // one hot pixel in the middle of a flat 0.2 field
    return grey8(7, 7, values);
  };

  it('median (radius 1) removes a single-pixel spike; without denoising it stays', async () => {
    const untouched = await run(spiked(), 7);
    expect(untouched[24]).toBe(1);
    const out = await run(spiked(), 7, { denoise: { median: 1 } });
    for (const v of out) expect(v).toBeCloseTo(0.2, 4);
  });

  it('gaussian spreads the spike symmetrically and keeps the total', async () => {
    const out = await run(spiked(), 7, { denoise: { gaussian: 1 } });
    expect(out[24]).toBeLessThan(0.6);
    expect(out[24]).toBeGreaterThan(0.3);
    expect(out[23]).toBeCloseTo(out[25] ?? NaN, 4);
    expect(out[17]).toBeCloseTo(out[31] ?? NaN, 4);
    const excess = Array.from(out).reduce((sum, v) => sum + (v - 0.2), 0);
    expect(excess).toBeCloseTo(0.8, 2);
  });
});

describe('contrast normalisation', () => {
  it('z-score gives mean 0 and standard deviation 1 over the image', async () => {
    const out = await run(grey8(2, 2, [0, 51, 102, 255]), 2, { normalise: 'z-score' });
    // Values 0, .2, .4, 1: mean .4, population std sqrt(.14).
    const std = Math.sqrt(0.14);
    expect(Array.from(out)).toEqual([-0.4 / std, -0.2 / std, 0, 0.6 / std].map((v) => expect.closeTo(v, 5)));
    expect(Array.from(zScore(new Float32Array([0.3, 0.3])))).toEqual([0, 0]);
  });

  it('z-score statistics skip the letterbox padding, which stays 0', async () => {
    const out = rows(await run(grey8(4, 2, [0, 255, 0, 255, 255, 0, 255, 0]), 4, { normalise: 'z-score' }), 4);
    expect(out[0]).toEqual([0, 0, 0, 0]);
    expect(out[1]).toEqual([-1, 1, -1, 1].map((v) => expect.closeTo(v, 5)));
  });

  it('histogram equalisation spreads levels by how many pixels lie below them', async () => {
    // Two levels: the darker becomes 0 and the brighter 1.
    const two = await run(grey8(4, 4, [...new Array<number>(12).fill(77), ...new Array<number>(4).fill(179)]), 4, { normalise: 'histogram-equalisation' });
    expect(new Set(two)).toEqual(new Set([0, 1]));
    expect(Array.from(two).filter((v) => v === 0)).toHaveLength(12);
    // Three levels with 8, 4 and 4 pixels: cdf 8, 12, 16 -> (cdf - 8) / 8 = 0, 0.5, 1.
    const three = equaliseHistogram(Float32Array.from([...new Array<number>(8).fill(0.1), ...new Array<number>(4).fill(0.15), ...new Array<number>(4).fill(0.9)]));
    expect(Array.from(new Set(three))).toEqual([0, 0.5, 1]);
  });

  it('min-max stretches the windowed image to [0, 1]', async () => {
    expect(Array.from(await run(grey8(2, 2, [51, 102, 102, 153]), 2, { normalise: 'min-max' }))).toEqual([0, 0.5, 0.5, 1].map((v) => expect.closeTo(v, 5)));
  });

  it('CLAHE raises local contrast of a low-contrast image, on 8-bit levels, and depends on its clip limit', async () => {
    const flat = grey8(16, 16, Array.from({ length: 256 }, (_, i) => 120 + (i % 16)));
    const spread = (out: Float32Array) => Math.max(...out) - Math.min(...out);
    const before = await run(flat, 16);
    const limited = await run(flat, 16, { normalise: { clahe: { tiles: 2, maxSlope: 2 } } });
    const unlimited = await run(flat, 16, { normalise: { clahe: { tiles: 2, maxSlope: 0 } } });
    expect(spread(before)).toBeCloseTo(15 / 255, 5);
    expect(spread(limited)).toBeGreaterThan(spread(before) * 2);
    expect(spread(unlimited)).toBeGreaterThan(spread(limited));
    for (const v of limited) expect(Math.abs(v * 255 - Math.round(v * 255))).toBeLessThan(1e-4);
  });
});

describe('PNG and JPEG', () => {
  const encode = async (pixels: Uint8Array | Uint16Array, width: number, height: number, channels: 1 | 3, format: 'png' | 'jpeg'): Promise<Buffer> => {
    const deep = pixels instanceof Uint16Array;
    const space = channels === 1 ? (deep ? 'grey16' : 'b-w') : deep ? 'rgb16' : 'srgb';
    const image = sharp(pixels, { raw: { width, height, channels } }).toColourspace(space);
    return format === 'png' ? image.png().toBuffer() : image.jpeg({ quality: 100 }).toBuffer();
  };

  it('decodes 8- and 16-bit grey and colour PNGs exactly, and colour JPEGs closely', async () => {
    const g8 = await decodeRaster(await encode(Uint8Array.of(0, 50, 100, 255), 2, 2, 1, 'png'), 'g8.png');
    expect(g8).toMatchObject({ format: 'png', channels: 1, bitDepth: 8, width: 2, height: 2 });
    expect(Array.from(g8.pixels)).toEqual([0, 50, 100, 255]);
    const g16 = await decodeRaster(await encode(Uint16Array.of(0, 1, 32768, 65535), 2, 2, 1, 'png'), 'g16.png');
    expect(g16).toMatchObject({ channels: 1, bitDepth: 16 });
    expect(Array.from(g16.pixels)).toEqual([0, 1, 32768, 65535]);
    const rgb = await decodeRaster(await encode(Uint8Array.of(255, 0, 0, 0, 255, 0), 2, 1, 3, 'png'), 'rgb.png');
    expect(rgb).toMatchObject({ channels: 3, bitDepth: 8 });
    expect(Array.from(rgb.pixels)).toEqual([255, 0, 0, 0, 255, 0]);
    const jpeg = await decodeRaster(await encode(new Uint8Array(8 * 8 * 3).fill(200), 8, 8, 3, 'jpeg'), 'c.jpg');
    expect(jpeg).toMatchObject({ format: 'jpeg', channels: 3, bitDepth: 8 });
    for (const v of jpeg.pixels) expect(Math.abs(v - 200)).toBeLessThanOrEqual(2);
  });

  it('runs them through the same pipeline: full sample range, then the study settings', async () => {
    const g16 = await decodeRaster(await encode(Uint16Array.of(0, 16384, 32768, 65535), 2, 2, 1, 'png'), 'g16.png');
    expect(Array.from(await run(g16, 2))).toEqual([0, 16384 / 65535, 32768 / 65535, 1].map((v) => expect.closeTo(v, 6)));
    expect(Array.from(await run(g16, 2, { window: 'none' }))).toEqual([0, 16384 / 65535, 32768 / 65535, 1].map((v) => expect.closeTo(v, 6)));
    const rgb = await decodeRaster(await encode(Uint8Array.of(255, 0, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255), 2, 2, 3, 'png'), 'rgb.png');
    expect(Array.from((await run(rgb, 2, {}, 3)).slice(0, 6))).toEqual([1, 0, 0, 0, 0, 1]);
    expect((await run(rgb, 2, {}, 1))[0]).toBeCloseTo(0.299, 4);
  });

  it('rejects damaged files with a reason and tells DICOM from PNG/JPEG by signature', async () => {
    const png = await encode(new Uint8Array(64 * 64).map((_, i) => i % 256), 64, 64, 1, 'png');
    await expect(decodeRaster(png.subarray(0, png.length - 40), 'cut.png')).rejects.toMatchObject({ reason: 'truncated', file: 'cut.png' });
    // Whole length but damaged inside: unreadable, not truncated.
    const damaged = Buffer.concat([png.subarray(0, 60), Buffer.alloc(40, 0x55), png.subarray(100)]);
    await expect(decodeRaster(damaged, 'damaged.png')).rejects.toMatchObject({ reason: 'unreadable-image' });
    const jpeg = await encode(new Uint8Array(64 * 64 * 3).map((_, i) => i % 251), 64, 64, 3, 'jpeg');
    await expect(decodeRaster(jpeg.subarray(0, jpeg.length / 2), 'cut.jpg')).rejects.toMatchObject({ reason: 'truncated' });
    await expect(decodeRaster(jpeg.subarray(0, jpeg.length / 2), 'cut.jpg')).rejects.toBeInstanceOf(ImageRejection);
    await expect(decodeRaster(Buffer.from('hello'), 'notes.txt')).rejects.toMatchObject({ reason: 'not-dicom' });
    expect(sniffRasterFormat(png)).toBe('png');
    expect(sniffRasterFormat(jpeg)).toBe('jpeg');
    // A Part 10 preamble may start with anything; "DICM" at 128 decides.
    const part10 = Buffer.concat([png.subarray(0, 8), Buffer.alloc(120), Buffer.from('DICM')]);
    expect(sniffRasterFormat(part10)).toBeUndefined();
  });
});

describe('pipelineHash', () => {
  const base = { inputSize: 64, channels: 1 as const, preprocessing: preprocessingSchema.parse({}) };

  it('changes with the settings, the input size and the channels, and not with key order', () => {
    const hash = pipelineHash(base);
    expect(pipelineHash({ ...base, preprocessing: preprocessingSchema.parse({ window: 'ct-lung' }) })).not.toBe(hash);
    expect(pipelineHash({ ...base, inputSize: 32 })).not.toBe(hash);
    expect(pipelineHash({ ...base, channels: 3 })).not.toBe(hash);
    const reordered = Object.fromEntries(Object.entries(base.preprocessing).reverse()) as typeof base.preprocessing;
    expect(pipelineHash({ ...base, preprocessing: reordered })).toBe(hash);
    expect(pipelineHash({ inputSize: 64 })).toBe(hash);
  });
});
