import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeAllFrames, decodeDicom, type DicomImage } from './reader.js';
import { DicomRejection } from './rejection.js';
import { at, colSlice, load, pixel, pixelCrc, rowSlice, testdata } from './reference.testkit.js';


/** Every frame of `name` equals the frames of its uncompressed counterpart, value for value. */
async function expectSamePixels(name: string, reference: string): Promise<void> {
  const [img, ref] = await Promise.all([load(name), load(reference)]);
  expect(img.header.numberOfFrames).toBe(ref.header.numberOfFrames);
  expect(img.pixels.constructor).toBe(ref.pixels.constructor);
  const a = decodeAllFrames(img);
  const b = decodeAllFrames(ref);
  a.forEach((frame, i) => expect(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).equals(Buffer.from(b[i]?.buffer ?? new ArrayBuffer(0)))).toBe(true));
}

const SC_RGB_ROWS = [5, 15, 25, 35, 45, 55, 65, 75, 85, 95];
const SC_RGB_BARS = [[255, 0, 0], [255, 128, 128], [0, 255, 0], [128, 255, 128], [0, 0, 255], [128, 128, 255], [0, 0, 0], [64, 64, 64], [192, 192, 192], [255, 255, 255]];

function expectMrSmall(img: DicomImage): void {
  expect(rowSlice(img, img.pixels, 0, 31, 34)).toEqual([422, 319, 361]);
  expect(rowSlice(img, img.pixels, 31, 0, 3)).toEqual([366, 363, 322]);
  expect(rowSlice(img, img.pixels, -1, 61, 64)).toEqual([1369, 1129, 862]);
}

function expectEmriSmall(img: DicomImage): void {
  const expected: Record<number, number[][]> = {
    0: [[206, 197, 159], [49, 78, 128], [362, 219, 135]],
    4: [[67, 82, 44], [37, 41, 17], [225, 380, 355]],
    9: [[72, 86, 69], [25, 4, 9], [227, 300, 147]],
  };
  for (const [index, [a, b, c]] of Object.entries(expected)) {
    const frame = img.decodeFrame(Number(index));
    expect(rowSlice(img, frame, 0, 31, 34)).toEqual(a);
    expect(rowSlice(img, frame, 31, 0, 3)).toEqual(b);
    expect(rowSlice(img, frame, -1, 61, 64)).toEqual(c);
  }
}

describe('RLE Lossless (REFERENCE_VALUES.md sections B and G)', () => {
  it('MR_small_RLE.dcm: signed 16-bit, same as MR_small.dcm', async () => {
    const img = await load('MR_small_RLE.dcm');
    expect(img.pixels).toBeInstanceOf(Int16Array);
    expectMrSmall(img);
    await expectSamePixels('MR_small_RLE.dcm', 'MR_small.dcm');
  });

  it('emri_small_RLE.dcm: 10 frames, one fragment each, no offset table', async () => {
    const img = await load('emri_small_RLE.dcm');
    expectEmriSmall(img);
    await expectSamePixels('emri_small_RLE.dcm', 'emri_small.dcm');
  });

  it('SC_rgb_rle.dcm: planar RGB segments come out interleaved', async () => {
    const img = await load('SC_rgb_rle.dcm');
    expect(SC_RGB_ROWS.map((r) => pixel(img, img.pixels, r, 50))).toEqual(SC_RGB_BARS);
    await expectSamePixels('SC_rgb_rle.dcm', 'SC_rgb.dcm');
  });

  it('SC_rgb_rle_16bit_2frame.dcm: 16-bit RGB, two frames', async () => {
    const img = await load('SC_rgb_rle_16bit_2frame.dcm');
    const [f0, f1] = decodeAllFrames(img);
    const a = 65535;
    const h = 32896;
    const q = 16448;
    expect(SC_RGB_ROWS.map((r) => pixel(img, f0 ?? new Uint16Array(), r, 50))).toEqual([
      [a, 0, 0], [a, h, h], [0, a, 0], [h, a, h], [0, 0, a], [h, h, a], [0, 0, 0], [q, q, q], [49344, 49344, 49344], [a, a, a],
    ]);
    const g = 32639;
    expect(SC_RGB_ROWS.map((r) => pixel(img, f1 ?? new Uint16Array(), r, 50))).toEqual([
      [0, a, a], [0, g, g], [a, 0, a], [g, 0, g], [a, a, 0], [g, g, 0], [a, a, a], [49087, 49087, 49087], [16191, 16191, 16191], [0, 0, 0],
    ]);
  });

  it('OBXXXX1A_rle.dcm: 8-bit palette indices', async () => {
    const img = await load('OBXXXX1A_rle.dcm');
    const first = rowSlice(img, img.pixels, 0, 0, img.header.columns);
    expect(Math.min(...first)).toBe(244);
    expect(Math.max(...first)).toBe(244);
    expect(rowSlice(img, img.pixels, 300, 491, 494)).toEqual([1, 246, 1]);
    const last = rowSlice(img, img.pixels, -1, 0, img.header.columns);
    expect(Math.min(...last)).toBe(0);
    expect(Math.max(...last)).toBe(0);
  });

  it.each([
    ['MR_small_RLE.dcm', 8192, 638863772, 127, 2145],
    ['OBXXXX1A_rle.dcm', 480000, 56366414, 0, 255],
    ['SC_rgb_rle.dcm', 30000, 250835251, 0, 255],
    ['SC_rgb_rle_16bit_2frame.dcm', 120000, 1048229346, 0, 65535],
    ['emri_small_RLE.dcm', 81920, 383121481, 0, 467],
  ] as Array<[string, number, number, number, number]>)('CRC-32 of %s', async (name, bytes, crc, min, max) => {
    expect(pixelCrc(await load(name))).toEqual({ crc, bytes, min, max });
  });

  it('rejects an RLE file whose last segment is cut short as corrupt: the file itself is complete', () => {
    const bytes = readFileSync(join(testdata, 'MR_small_RLE.dcm'));
    // Shrink the single fragment's length and drop its tail, keeping the item structure valid.
    const fragmentTag = Buffer.from([0xfe, 0xff, 0x00, 0xe0]);
    const offsetTable = bytes.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])) + 12;
    const fragment = bytes.indexOf(fragmentTag, offsetTable + 8);
    const length = bytes.readUInt32LE(fragment + 4);
    const cut = 200;
    const damaged = Buffer.concat([bytes.subarray(0, fragment + 8 + length - cut), bytes.subarray(fragment + 8 + length)]);
    damaged.writeUInt32LE(length - cut, fragment + 4);
    const call = () => decodeDicom(damaged, { file: 'cut-rle' });
    expect(call).toThrow(DicomRejection);
    expect(call).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    // Cutting the file itself inside that fragment is truncation.
    const cutFile = () => decodeDicom(bytes.subarray(0, fragment + 8 + length - cut), { file: 'cut-rle' });
    expect(cutFile).toThrow(expect.objectContaining({ reason: 'truncated' }));
  });
});

describe('JPEG-LS (REFERENCE_VALUES.md section D)', () => {
  it('MR_small_jpeg_ls_lossless.dcm: identical to MR_small.dcm', async () => {
    expectMrSmall(await load('MR_small_jpeg_ls_lossless.dcm'));
    await expectSamePixels('MR_small_jpeg_ls_lossless.dcm', 'MR_small.dcm');
  });

  it('emri_small_jpeg_ls_lossless.dcm: 10 frames identical to emri_small.dcm', async () => {
    expectEmriSmall(await load('emri_small_jpeg_ls_lossless.dcm'));
    await expectSamePixels('emri_small_jpeg_ls_lossless.dcm', 'emri_small.dcm');
  });

  it('JLSL_08_07_0_1F.dcm: 7 bits stored in 8', async () => {
    const img = await load('JLSL_08_07_0_1F.dcm');
    expect(img.pixels).toBeInstanceOf(Uint8Array);
    expect(colSlice(img, img.pixels, 58, 59, 69)).toEqual([55, 53, 58, 85, 109, 123, 116, 102, 98, 89]);
  });

  it('JLSL_16_15_1_1F.dcm: signed 15 bits stored', async () => {
    const img = await load('JLSL_16_15_1_1F.dcm');
    expect(img.pixels).toBeInstanceOf(Int16Array);
    expect(colSlice(img, img.pixels, 58, 59, 65)).toEqual([-2073, -2629, -1167, 5566, 11808, 15604]);
  });

  it('JLSL_RGB_ILV0.dcm: plane-interleaved RGB without a preamble', async () => {
    const img = await load('JLSL_RGB_ILV0.dcm');
    expect([124, 125, 126, 127].map((r) => pixel(img, img.pixels, r, 40))).toEqual([[115, 109, 91], [109, 105, 100], [100, 111, 94], [192, 53, 172]]);
  });

  it('JPEGLSNearLossless_16.dcm: near-lossless 16-bit, 50 rows x 10 columns', async () => {
    const img = await load('JPEGLSNearLossless_16.dcm');
    expect([img.header.rows, img.header.columns]).toEqual([50, 10]);
    expect([0, 5, 10, 15, 20, 25, 30, 35, 40].map((r) => at(img, img.pixels, r, 0))).toEqual([65535, 32765, 16385, 4095, 1025, 255, 65, 15, 5]);
  });

  it('SC_rgb_jls_lossy_line.dcm: near-lossless, line-interleaved RGB', async () => {
    const img = await load('SC_rgb_jls_lossy_line.dcm');
    expect([0, 10, 20, 30, 40, 50, 60, 70, 80, 90].map((r) => pixel(img, img.pixels, r, 0))).toEqual([
      [255, 0, 0], [255, 130, 130], [0, 255, 0], [130, 255, 130], [0, 0, 255], [130, 130, 255], [0, 0, 0], [65, 65, 65], [190, 190, 190], [255, 255, 255],
    ]);
  });

  it('CT1_JLSN.dcm: two fragments for one frame are joined before decoding', async () => {
    const img = await load('CT1_JLSN.dcm');
    expect(img.header.rows * img.header.columns).toBe(img.pixels.length);
    expect(img.pixels).toBeInstanceOf(Int16Array);
  });

  it('rejects a corrupted JPEG-LS stream and still decodes the next file', () => {
    const bytes = Buffer.from(readFileSync(join(testdata, 'MR_small_jpeg_ls_lossless.dcm')));
    // Overwrite the middle of the scan data (the file ends with the codestream, EOI and the sequence delimiter).
    bytes.fill(0xff, bytes.length - 2000, bytes.length - 1000);
    const call = () => decodeDicom(bytes, { file: 'bad-jls' });
    expect(call).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    expect(call).toThrow(/^bad-jls: the JPEG-LS stream of frame 1 of 1 is damaged and cannot be decoded \(CharLS could not read it\)$/);
    expectMrSmall(decodeDicom(readFileSync(join(testdata, 'MR_small_jpeg_ls_lossless.dcm'))));
  });
});

describe('JPEG 2000 and HTJ2K (REFERENCE_VALUES.md section E)', () => {
  it.each([
    ['MR_small_jp2klossless.dcm', 'MR_small.dcm'],
    ['emri_small_jpeg_2k_lossless.dcm', 'emri_small.dcm'],
    ['US1_J2KR.dcm', 'US1_UNCR.dcm'],
    ['JPEG2000.dcm', 'JPEG2000_UNC.dcm'],
    ['SC_rgb_gdcm_KY.dcm', 'SC_rgb_gdcm2k_uncompressed.dcm'],
  ])('%s decodes identical to %s', async (name, reference) => {
    await expectSamePixels(name, reference);
  });

  it('emri_small_jpeg_2k_lossless.dcm: reference values on frames 0, 4 and 9', async () => {
    expectEmriSmall(await load('emri_small_jpeg_2k_lossless.dcm'));
  });

  it('US1_J2KR.dcm: YBR_RCT is reported as the RGB the decoder returns', async () => {
    const img = await load('US1_J2KR.dcm');
    expect(img.header.photometricInterpretation).toBe('RGB');
    expect(pixelCrc(img)).toEqual({ crc: 355729053, bytes: 921600, min: 0, max: 255 });
  });

  it('J2K_pixelrep_mismatch.dcm: unsigned codestream read as signed 13-bit per the header', async () => {
    const img = await load('J2K_pixelrep_mismatch.dcm');
    expect(img.pixels).toBeInstanceOf(Int16Array);
    expect(at(img, img.pixels, 0, 0)).toBe(-2000);
    expect(colSlice(img, img.pixels, 279, 47, 57)).toEqual([621, 412, 138, -193, -520, -767, -907, -966, -988, -995]);
    expect(colSlice(img, img.pixels, 106, 328, 338)).toEqual([-377, -121, 141, 383, 633, 910, 1198, 1455, 1638, 1732]);
  });

  it('GDCMJ2K_TextGBR.dcm: JP2-wrapped YBR_RCT codestream', async () => {
    const img = await load('GDCMJ2K_TextGBR.dcm');
    expect([pixel(img, img.pixels, 45, 140), pixel(img, img.pixels, 46, 140), pixel(img, img.pixels, 350, 195)]).toEqual([[223, 32, 32], [255, 0, 0], [128, 128, 128]]);
  });

  it('MR2_J2KI.dcm and RG3_J2KI.dcm: lossy, one frame spread over several fragments', async () => {
    for (const name of ['MR2_J2KI.dcm', 'RG3_J2KI.dcm']) {
      const img = await load(name);
      expect(img.pixels.length).toBe(img.header.rows * img.header.columns);
      // Lossy, so no exact reference here; a misassembled frame would decode to a constant or fail outright.
      expect(img.pixels.some((v) => v !== img.pixels[0])).toBe(true);
    }
  });

  it('HTJ2KLossless_08_RGB.dcm', async () => {
    const img = await load('HTJ2KLossless_08_RGB.dcm');
    expect(Array.from({ length: 10 }, (_, i) => pixel(img, img.pixels, 160, 295 + i))).toEqual([
      [90, 38, 1], [94, 40, 1], [97, 42, 5], [173, 122, 59], [172, 133, 69], [169, 135, 75], [168, 136, 79], [169, 137, 79], [169, 137, 81], [169, 136, 79],
    ]);
    expect(Array.from({ length: 10 }, (_, i) => pixel(img, img.pixels, 275 + i, 635))).toEqual([
      [208, 193, 172], [238, 228, 215], [235, 229, 216], [233, 226, 212], [239, 231, 218], [238, 232, 219], [224, 218, 205], [239, 234, 223], [246, 241, 232], [242, 236, 226],
    ]);
  });

  it('emri_small_jpeg_2k_lossless_too_short.dcm is refused as truncated, not decoded', async () => {
    const error = await load('emri_small_jpeg_2k_lossless_too_short.dcm').then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DicomRejection);
    expect(error).toMatchObject({ reason: 'truncated' });
    expect((error as Error).message).toMatch(/file ends inside the encapsulated Pixel Data/);
  });

  it('JPEG2000-embedded-sequence-delimiter.dcm (damaged codestream) is refused', async () => {
    const error = await load('JPEG2000-embedded-sequence-delimiter.dcm').then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DicomRejection);
  });

  it('a codestream cut before its EOC marker is refused as truncated', () => {
    const bytes = Buffer.from(readFileSync(join(testdata, 'MR_small_jp2klossless.dcm')));
    // Blank the EOC marker (and its padding) at the end of the only fragment, just before the sequence delimiter.
    const delimiter = bytes.lastIndexOf(Buffer.from([0xfe, 0xff, 0xdd, 0xe0]));
    bytes.fill(0x11, delimiter - 2, delimiter);
    if (bytes[delimiter - 3] === 0xd9) bytes.fill(0x11, delimiter - 4, delimiter);
    expect(() => decodeDicom(bytes, { file: 'no-eoc' })).toThrow(/does not end with the EOC marker/);
  });
});

describe('JPEG (REFERENCE_VALUES.md section C)', () => {
  /** Lossy colour: within a few levels of the uncompressed colour bars. */
  function expectNearBars(img: DicomImage, tolerance: number): void {
    expect(img.header.photometricInterpretation).toBe('RGB');
    SC_RGB_ROWS.forEach((r, i) => {
      const got = pixel(img, img.pixels, r, 50);
      (SC_RGB_BARS[i] ?? []).forEach((v, s) => expect(Math.abs((got[s] ?? -999) - v)).toBeLessThanOrEqual(tolerance));
    });
  }

  it('JPEG-LL.dcm: lossless SV1, signed 16-bit', async () => {
    const img = await load('JPEG-LL.dcm');
    expect(img.pixels).toBeInstanceOf(Int16Array);
    expect(rowSlice(img, img.pixels, 400, 124, 132)).toEqual([60, 58, 61, 68, 59, 65, 64, 67]);
    expect(rowSlice(img, img.pixels, 600, 124, 132)).toEqual([3, 1, 2, 0, 2, 1, 2, 0]);
  });

  it('SC_rgb_jpeg_gdcm.dcm: lossless SV1 RGB (frame is a view into the file buffer)', async () => {
    await expectSamePixels('SC_rgb_jpeg_gdcm.dcm', 'SC_rgb.dcm');
  });

  it('SC_rgb_dcmtk_+eb+cr.dcm: baseline with RGB component IDs', async () => {
    const img = await load('SC_rgb_dcmtk_+eb+cr.dcm');
    expect(SC_RGB_ROWS.map((r) => pixel(img, img.pixels, r, 50))).toEqual(SC_RGB_BARS);
  });

  it.each(['SC_rgb_jpeg_dcmtk.dcm', 'SC_rgb_dcmtk_+eb+cy+np.dcm'])('%s: YBR_FULL(_422) baseline comes back as RGB', async (name) => {
    // Lossy coding plus 8-bit YCbCr rounding: pydicom's own as_rgb of these bars is off by up to 5 (e.g. (0,255,5)).
    expectNearBars(await load(name), 6);
  });

  it('JPEGBaseline_1s_1f_u_08_08.dcm and the 30-frame examples_ybr_color.dcm decode every frame', async () => {
    const mono = await load('JPEGBaseline_1s_1f_u_08_08.dcm');
    expect(mono.pixels.length).toBe(mono.header.rows * mono.header.columns);
    const multi = await load('examples_ybr_color.dcm');
    const frames = decodeAllFrames(multi);
    expect(frames).toHaveLength(30);
    expect(new Set(frames.map((f) => crc32(f))).size).toBeGreaterThan(1);
  });

  it('JPGExtended.dcm: 12-bit JPEG Extended (Process 4) decodes to 16-bit stored values', async () => {
    const img = await load('JPGExtended.dcm');
    expect(img.pixels).toBeInstanceOf(Uint16Array);
    expect(at(img, img.pixels, 420, 140)).toBe(244);
    expect(at(img, img.pixels, 230, 120)).toBe(95);
  });

  it('JPEG-lossy.dcm: the same stream with an invalid scan header (Se = 0) decodes to the same pixels', async () => {
    // Sequential scans always carry all 64 coefficients, so the bad field is ignored, as libjpeg does.
    const img = await load('JPEG-lossy.dcm');
    expect(at(img, img.pixels, 420, 140)).toBe(244);
    expect(at(img, img.pixels, 230, 120)).toBe(95);
    await expectSamePixels('JPEG-lossy.dcm', 'JPGExtended.dcm');
  });

  it('a JPEG frame without its EOI marker is refused as truncated', () => {
    const bytes = Buffer.from(readFileSync(join(testdata, 'SC_rgb_jpeg_gdcm.dcm')));
    const delimiter = bytes.lastIndexOf(Buffer.from([0xfe, 0xff, 0xdd, 0xe0]));
    bytes.fill(0x11, delimiter - 4, delimiter);
    expect(() => decodeDicom(bytes, { file: 'no-eoi' })).toThrow(/does not end with the EOI marker/);
  });
});

/**
 * Rewrites a file's encapsulated Pixel Data (explicit VR LE, one fragment per frame in the source) so that every
 * frame is spread over `parts` fragments, with or without a Basic Offset Table.
 */
function reencapsulate(bytes: Buffer, parts: number, withOffsetTable: boolean): Buffer {
  // (7FE0,0010), VR OB or OW, two reserved bytes, undefined length.
  const headerLength = 12;
  let start = bytes.length;
  do start = bytes.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]), start - 1);
  while (start >= 0 && bytes.readUInt32LE(start + 8) !== 0xffffffff);
  if (start < 0) throw new Error('no encapsulated Pixel Data');
  let pos = start + headerLength;
  const items: Buffer[] = [];
  for (;;) {
    const element = bytes.readUInt16LE(pos + 2);
    const length = bytes.readUInt32LE(pos + 4);
    pos += 8;
    if (element === 0xe0dd) break;
    items.push(bytes.subarray(pos, pos + length));
    pos += length;
  }
  const item = (data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt16LE(0xfffe, 0);
    head.writeUInt16LE(0xe000, 2);
    head.writeUInt32LE(data.length, 4);
    return Buffer.concat([head, data]);
  };
  const frames = items.slice(1).map((frame) => {
    const size = Math.ceil(frame.length / parts / 2) * 2;
    const pieces = Array.from({ length: parts }, (_, i) => frame.subarray(i * size, (i + 1) * size)).filter((p) => p.length > 0);
    return Buffer.concat(pieces.map(item));
  });
  const table = Buffer.alloc(withOffsetTable ? frames.length * 4 : 0);
  let offset = 0;
  frames.forEach((frame, i) => {
    if (withOffsetTable) table.writeUInt32LE(offset, i * 4);
    offset += frame.length;
  });
  const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  return Buffer.concat([bytes.subarray(0, start + headerLength), item(table), ...frames, delimiter, bytes.subarray(pos)]);
}

describe('fragmented and multi-frame encapsulated Pixel Data, for every codec', () => {
  const sources = [
    'emri_small_RLE.dcm',
    'emri_small_jpeg_ls_lossless.dcm',
    'emri_small_jpeg_2k_lossless.dcm',
    'HTJ2KLossless_08_RGB.dcm',
    'examples_ybr_color.dcm',
    'SC_rgb_jpeg_gdcm.dcm',
    'SC_rgb_rle_16bit_2frame.dcm',
    'JPGExtended.dcm',
  ];

  const frameBytes = (bytes: Buffer, file: string): Buffer[] =>
    decodeAllFrames(decodeDicom(bytes, { file })).map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));

  it.each(sources)('%s: frames split over 3 fragments with a Basic Offset Table decode the same', (name) => {
    const original = readFileSync(join(testdata, name));
    const split = reencapsulate(original, 3, true);
    expect(split.length).toBeGreaterThan(original.length);
    expect(frameBytes(split, name)).toEqual(frameBytes(original, name));
  });

  it.each(sources.filter((n) => !n.includes('RLE') && !n.includes('rle')))(
    '%s: frames split over 3 fragments without an offset table are found by their start markers',
    (name) => {
      const original = readFileSync(join(testdata, name));
      expect(frameBytes(reencapsulate(original, 3, false), name)).toEqual(frameBytes(original, name));
    },
  );

  it('multi-frame RLE split without an offset table is refused, not guessed', () => {
    const split = reencapsulate(readFileSync(join(testdata, 'emri_small_RLE.dcm')), 2, false);
    const call = () => decodeDicom(split, { file: 'split-rle' });
    expect(call).toThrow(expect.objectContaining({ reason: 'unsupported-pixel-format' }));
    expect(call).toThrow(/cannot split 20 fragments into 10 frames without a Basic Offset Table/);
  });
});
