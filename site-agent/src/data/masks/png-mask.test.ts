import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { MaskError } from './errors.js';
import { readPngMask } from './png-mask.js';

/** Grey or RGB(A) samples written as PNG by sharp (16-bit when given a Uint16Array). */
async function sharpPng(width: number, height: number, channels: 1 | 3 | 4, samples: Uint8Array | Uint16Array): Promise<Uint8Array> {
  // sharp takes the sample depth of raw input from the typed array it is given.
  const deep = samples instanceof Uint16Array;
  const input = sharp(samples, { raw: { width, height, channels } });
  const coloured = channels === 1 ? input.toColourspace(deep ? 'grey16' : 'b-w') : input;
  return coloured.png({ compressionLevel: 1 }).toBuffer();
}

/** A PNG written chunk by chunk, for what sharp does not write exactly: palettes and 1-bit grey. */
function rawPng(width: number, height: number, bitDepth: number, colourType: number, rows: readonly number[][], palette?: readonly number[]): Uint8Array {
  const chunk = (type: string, data: Uint8Array): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  const scanlines = Buffer.concat(rows.map((row) => Buffer.from([0, ...row])));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(palette === undefined ? [] : [chunk('PLTE', Uint8Array.from(palette))]),
    chunk('IDAT', deflateSync(scanlines)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

async function errorOf(run: () => Promise<unknown>): Promise<MaskError> {
  try {
    await run();
  } catch (error) {
    if (error instanceof MaskError) return error;
    throw error;
  }
  throw new Error('expected a MaskError');
}

const labelsOf = async (bytes: Uint8Array, options: Parameters<typeof readPngMask>[1] = {}): Promise<number[]> => {
  const result = await readPngMask(bytes, { imageKey: 'img', ...options });
  return [...(result.masks.get('img')?.labels ?? [])];
};

describe('readPngMask', () => {
  const grey = Uint8Array.from([0, 1, 2, 0, 255, 2]); // 3 x 2

  it('reads 8-bit grey: any non-zero value is label 1 by default', async () => {
    const png = await sharpPng(3, 2, 1, grey);
    const result = await readPngMask(png, { file: 'm.png', imageKey: '2.25.7' });
    expect(result).toMatchObject({ kind: 'png', file: 'm.png', segments: [{ number: 1, label: 'foreground' }], unresolved: [] });
    expect(result.masks.get('2.25.7')).toEqual({ rows: 2, columns: 3, labels: Uint8Array.from([0, 1, 1, 0, 1, 1]) });
  });

  it('maps grey values through a value-to-label map, 0 staying background', async () => {
    const png = await sharpPng(3, 2, 1, grey);
    const valueLabels = new Map([
      [1, 1],
      [2, 3],
      [255, 0],
    ]);
    expect(await labelsOf(png, { valueLabels, labelNames: new Map([[3, 'tumour']]) })).toEqual([0, 1, 3, 0, 0, 3]);
    const result = await readPngMask(png, { valueLabels, labelNames: new Map([[3, 'tumour']]) });
    expect(result.segments).toEqual([
      { number: 1, label: 'label 1' },
      { number: 3, label: 'tumour' },
    ]);
  });

  it('refuses values the map does not list', async () => {
    const png = await sharpPng(3, 2, 1, grey);
    const error = await errorOf(() => readPngMask(png, { file: 'm.png', valueLabels: new Map([[1, 1]]) }));
    expect(error.message).toBe('m.png: mask values not in the value-to-label map: 2 (2 pixels), 255 (1 pixels)');
  });

  it('reads 16-bit grey values exactly', async () => {
    const png = await sharpPng(2, 2, 1, Uint16Array.from([0, 1000, 65535, 1000]));
    expect(await labelsOf(png, { valueLabels: new Map([[1000, 2], [65535, 7]]) })).toEqual([0, 2, 7, 2]);
  });

  it('reads 1-bit grey as 0 and 1, not 0 and 255', async () => {
    const png = rawPng(8, 1, 1, 0, [[0b10110000]]);
    expect(await labelsOf(png, { valueLabels: new Map([[1, 4]]) })).toEqual([4, 0, 4, 4, 0, 0, 0, 0]);
  });

  it('reads palette PNGs by palette index', async () => {
    // Index 0 black, 1 red, 2 green; 4-bit indices.
    const png = rawPng(3, 1, 4, 3, [[0x21, 0x00]], [0, 0, 0, 255, 0, 0, 0, 255, 0]);
    expect(await labelsOf(png, { valueLabels: new Map([[1, 1], [2, 2]]) })).toEqual([2, 1, 0]);
  });

  it('refuses a palette that lists a used colour twice', async () => {
    const png = rawPng(2, 1, 8, 3, [[0, 1]], [0, 0, 0, 0, 0, 0]);
    const error = await errorOf(() => readPngMask(png, { file: 'p.png' }));
    expect(error.message).toBe('p.png: palette lists colour #000000 more than once, so its index is ambiguous');
  });

  it('reads RGB colours as 0xRRGGBB, ignoring alpha', async () => {
    const rgba = Uint8Array.from([0, 0, 0, 0, 255, 0, 0, 255, 0, 255, 0, 10, 255, 0, 0, 0]);
    const png = await sharpPng(4, 1, 4, rgba);
    expect(await labelsOf(png, { valueLabels: new Map([[0xff0000, 1], [0x00ff00, 2]]) })).toEqual([0, 1, 2, 1]);
    expect(await labelsOf(png)).toEqual([0, 1, 1, 1]);
  });

  it('reads an RGB image whose pixels are all grey as grey levels', async () => {
    const png = await sharpPng(3, 1, 3, Uint8Array.from([0, 0, 0, 2, 2, 2, 1, 1, 1]));
    expect(await labelsOf(png, { valueLabels: new Map([[1, 1], [2, 2]]) })).toEqual([0, 2, 1]);
  });

  it('refuses a mask of another size than its image', async () => {
    const png = await sharpPng(3, 2, 1, grey);
    const error = await errorOf(() => readPngMask(png, { file: 'm.png', expectedRows: 2, expectedColumns: 4 }));
    expect(error).toMatchObject({ reason: 'mismatch', message: 'm.png: mask is 2 rows x 3 columns, its image 2 x 4' });
  });

  it('refuses what is not a PNG, a damaged PNG and labels outside 0..255', async () => {
    expect(await errorOf(() => readPngMask(Uint8Array.from([1, 2, 3]), { file: 'x.png' }))).toMatchObject({ reason: 'not-a-mask' });
    const png = await sharpPng(3, 2, 1, grey);
    const damaged = await errorOf(() => readPngMask(png.subarray(0, 40), { file: 'cut.png' }));
    expect(damaged.reason).toBe('invalid');
    expect(damaged.message).toMatch(/^cut\.png: PNG cannot be decoded/);
    expect((await errorOf(() => readPngMask(png, { valueLabels: new Map([[1, 256]]) }))).message).toContain('label 256 for value 1 must be an integer in 0..255');
  });

  it('keys the mask by the file name when no image key is given', async () => {
    const result = await readPngMask(await sharpPng(3, 2, 1, grey), { file: 'masks/case1.png' });
    expect([...result.masks.keys()]).toEqual(['masks/case1.png']);
  });
});
