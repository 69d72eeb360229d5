import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultCodecs, type PixelCodec } from './codecs.js';
import type { PixelArray } from './pixels.js';
import { decodeAllFrames, decodeDicom, type DicomImage } from './reader.js';
import { DicomRejection, type DicomRejectionReason } from './rejection.js';
import { at, colSlice, load, pixelCrc, rowSlice, testdata } from './reference.testkit.js';

const rgb = (img: DicomImage, frame: PixelArray, row: number, col: number): number[] =>
  [0, 1, 2].map((s) => at(img, frame, row, col, s));

describe('native DICOM against REFERENCE_VALUES.md (section A)', () => {
  it('CT_small.dcm: signed 16-bit explicit VR LE', async () => {
    const img = await load('CT_small.dcm');
    expect(img.pixels).toBeInstanceOf(Int16Array);
    expect(rowSlice(img, img.pixels, 24, 36, 40)).toEqual([520, 802, 930, 1008]);
    expect(colSlice(img, img.pixels, 40, 40, 45)).toEqual([1138, 1165, 1113, 1088, 1072]);
  });

  it.each(['MR_small.dcm', 'MR_small_implicit.dcm', 'MR_small_expb.dcm', 'MR_small_bigendian.dcm', 'MR_small_padded.dcm'])(
    '%s: same pixels in every native encoding',
    async (name) => {
      const img = await load(name);
      expect(rowSlice(img, img.pixels, 0, 31, 34)).toEqual([422, 319, 361]);
      expect(rowSlice(img, img.pixels, 31, 0, 3)).toEqual([366, 363, 322]);
      expect(rowSlice(img, img.pixels, -1, 61, 64)).toEqual([1369, 1129, 862]);
      expect(at(img, img.pixels, -1, -1)).toBe(862);
    },
  );

  it('emri_small.dcm: 10 frames of 12-bit stored in 16', async () => {
    const img = await load('emri_small.dcm');
    expect(img.header.numberOfFrames).toBe(10);
    const expected: Record<number, number[][]> = {
      0: [[206, 197, 159], [49, 78, 128], [362, 219, 135]],
      4: [[67, 82, 44], [37, 41, 17], [225, 380, 355]],
      9: [[72, 86, 69], [25, 4, 9], [227, 300, 147]],
    };
    for (const [frameIndex, [a, b, c]] of Object.entries(expected)) {
      const frame = img.decodeFrame(Number(frameIndex));
      expect(rowSlice(img, frame, 0, 31, 34)).toEqual(a);
      expect(rowSlice(img, frame, 31, 0, 3)).toEqual(b);
      expect(rowSlice(img, frame, -1, 61, 64)).toEqual(c);
    }
  });

  it('SC_rgb.dcm and SC_rgb_2frame.dcm: interleaved RGB colour bars', async () => {
    const bars = [[255, 0, 0], [255, 128, 128], [0, 255, 0], [128, 255, 128], [0, 0, 255], [128, 128, 255], [0, 0, 0], [64, 64, 64], [192, 192, 192], [255, 255, 255]];
    const inverse = [[0, 255, 255], [0, 127, 127], [255, 0, 255], [127, 0, 127], [255, 255, 0], [127, 127, 0], [255, 255, 255], [191, 191, 191], [63, 63, 63], [0, 0, 0]];
    const rowsAt = [5, 15, 25, 35, 45, 55, 65, 75, 85, 95];
    const single = await load('SC_rgb.dcm');
    expect(rowsAt.map((r) => rgb(single, single.pixels, r, 50))).toEqual(bars);
    const two = await load('SC_rgb_2frame.dcm');
    const [f0, f1] = decodeAllFrames(two);
    expect(rowsAt.map((r) => rgb(two, f0 ?? new Uint8Array(), r, 50))).toEqual(bars);
    expect(rowsAt.map((r) => rgb(two, f1 ?? new Uint8Array(), r, 50))).toEqual(inverse);
  });

  it('SC_rgb_small_odd.dcm: odd-length pixel data', async () => {
    const img = await load('SC_rgb_small_odd.dcm');
    const rows = [0, 1, 2].map((r) => [0, 1, 2].map((c) => rgb(img, img.pixels, r, c)));
    expect(rows).toEqual([
      [[166, 141, 52], [166, 141, 52], [166, 141, 52]],
      [[63, 87, 176], [63, 87, 176], [63, 87, 176]],
      [[158, 158, 158], [158, 158, 158], [158, 158, 158]],
    ]);
  });

  it.each(['SC_ybr_full_uncompressed.dcm', 'SC_ybr_full_422_uncompressed.dcm'])('%s: raw Y Cb Cr triplets', async (name) => {
    const img = await load(name);
    const expected = [[76, 85, 255], [166, 106, 193], [150, 46, 20], [203, 86, 75], [29, 255, 107], [142, 193, 118], [0, 128, 128], [64, 128, 128], [192, 128, 128], [255, 128, 128]];
    expect([5, 15, 25, 35, 45, 55, 65, 75, 85, 95].map((r) => rgb(img, img.pixels, r, 50))).toEqual(expected);
  });

  it('ExplVR_BigEnd.dcm: 8-bit RGB in explicit VR big endian', async () => {
    const img = await load('ExplVR_BigEnd.dcm');
    expect([3, 4, 5].map((c) => rgb(img, img.pixels, 9, c))).toEqual([[171, 171, 171], [255, 255, 255], [255, 255, 0]]);
    expect([8, 9, 10, 11].map((c) => rgb(img, img.pixels, 58, c))).toEqual([[255, 236, 0], [255, 183, 0], [255, 175, 0], [255, 183, 0]]);
  });

  it('rtdose.dcm: unsigned 32-bit, 15 frames, implicit VR', async () => {
    const img = await load('rtdose.dcm');
    expect(img.pixels).toBeInstanceOf(Uint32Array);
    expect(rowSlice(img, img.pixels, 0, 0, 3)).toEqual([1249000, 1249000, 1250000]);
    expect(rowSlice(img, img.pixels, 4, 3, 6)).toEqual([1031000, 1029000, 1027000]);
    expect(rowSlice(img, img.pixels, -1, 7, 10)).toEqual([803000, 801000, 798000]);
    expect(rowSlice(img, img.decodeFrame(7), 0, 0, 3)).toEqual([1253000, 1253000, 1249000]);
    expect(rowSlice(img, img.decodeFrame(14), 0, 0, 3)).toEqual([1249000, 1250000, 1251000]);
  });

  it('image_dfl.dcm: deflated explicit VR LE', async () => {
    const img = await load('image_dfl.dcm');
    const row = (r: number) => rowSlice(img, img.pixels, r, 0, img.header.columns);
    expect(Math.min(...row(10))).toBe(41);
    expect(Math.max(...row(10))).toBe(255);
    expect(rowSlice(img, img.pixels, 300, 255, 263)).toEqual([138, 65, 65, 65, 65, 35, 35, 35]);
    expect(Math.min(...row(500))).toBe(65);
    expect(Math.max(...row(500))).toBe(219);
  });

  it('no_meta.dcm: bare dataset after a stray byte decodes like CT_small.dcm', async () => {
    const [bare, full] = await Promise.all([load('no_meta.dcm'), load('CT_small.dcm')]);
    expect(bare.header.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(Array.from(bare.pixels)).toEqual(Array.from(full.pixels));
    expect(bare.header.rescaleIntercept).toBe(-1024);
  });
});

describe('CRC-32 of decoded pixels (REFERENCE_VALUES.md section G)', () => {
  const table: Array<[string, number, number, number, number]> = [
    ['CT_small.dcm', 32768, 2126523256, 128, 2191],
    ['ExplVR_BigEnd.dcm', 14400, 1863179403, 0, 255],
    ['JPEG2000_UNC.dcm', 524288, 2923584017, -30, 245],
    ['MR_small.dcm', 8192, 638863772, 127, 2145],
    ['MR_small_bigendian.dcm', 8192, 638863772, 127, 2145],
    ['MR_small_expb.dcm', 8192, 638863772, 127, 2145],
    ['MR_small_implicit.dcm', 8192, 638863772, 127, 2145],
    ['MR_small_padded.dcm', 8192, 638863772, 127, 2145],
    ['SC_rgb.dcm', 30000, 250835251, 0, 255],
    ['SC_rgb_2frame.dcm', 60000, 772204689, 0, 255],
    ['SC_rgb_gdcm2k_uncompressed.dcm', 30000, 250835251, 0, 255],
    ['SC_rgb_small_odd.dcm', 27, 4220904364, 52, 176],
    ['SC_ybr_full_422_uncompressed.dcm', 30000, 3524397199, 0, 255],
    ['SC_ybr_full_uncompressed.dcm', 30000, 3524397199, 0, 255],
    ['US1_UNCR.dcm', 921600, 355729053, 0, 255],
    ['eCT_Supplemental.dcm', 1048576, 3696989599, 0, 1196],
    ['emri_small.dcm', 81920, 383121481, 0, 467],
    ['image_dfl.dcm', 262144, 3700532309, 0, 255],
    ['pcir_CR1_6154.dcm', 512, 3786616249, 1994, 2802],
    ['rtdose.dcm', 6000, 1329677288, 795000, 1254000],
  ];
  it.each(table)('%s', async (name, bytes, crc, min, max) => {
    expect(pixelCrc(await load(name))).toEqual({ crc, bytes, min, max });
  });
});

describe('header attributes', () => {
  it('CT_small.dcm', async () => {
    const h = (await load('CT_small.dcm')).header;
    expect(h).toMatchObject({
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      transferSyntaxName: 'Explicit VR Little Endian',
      modality: 'CT',
      rows: 128,
      columns: 128,
      samplesPerPixel: 1,
      photometricInterpretation: 'MONOCHROME2',
      bitsAllocated: 16,
      bitsStored: 16,
      highBit: 15,
      pixelRepresentation: 1,
      signed: true,
      numberOfFrames: 1,
      rescaleSlope: 1,
      rescaleIntercept: -1024,
      windowCenter: undefined,
      windowWidth: undefined,
    });
    expect(h.sopInstanceUid).toMatch(/^[0-9.]+$/);
    expect(h.studyInstanceUid).toMatch(/^[0-9.]+$/);
  });

  it('MR_small.dcm window and pcir_CR1_6154.dcm MONOCHROME1 rescale', async () => {
    const mr = (await load('MR_small_bigendian.dcm')).header;
    expect(mr).toMatchObject({ modality: 'MR', windowCenter: 600, windowWidth: 1600, transferSyntaxName: 'Explicit VR Big Endian' });
    const cr = (await load('pcir_CR1_6154.dcm')).header;
    expect(cr).toMatchObject({
      modality: 'CR',
      photometricInterpretation: 'MONOCHROME1',
      bitsStored: 12,
      highBit: 11,
      rescaleSlope: 0.684,
      rescaleIntercept: 200,
      windowCenter: 1600,
      windowWidth: 2800,
    });
  });
});

describe('bit-packed and float pixel data', () => {
  it('unpacks Bits Allocated 1 (liver_1frame.dcm) to 0/1 per pixel', async () => {
    const img = await load('liver_1frame.dcm');
    expect(img.pixels).toBeInstanceOf(Uint8Array);
    expect(img.pixels.length).toBe(512 * 512);
    expect(rowSlice(img, img.pixels, 155, 180, 183)).toEqual([0, 1, 1]);
    expect(rowSlice(img, img.pixels, 155, 310, 314)).toEqual([1, 0, 1, 0]);
    expect(rowSlice(img, img.pixels, 254, 78, 81)).toEqual([0, 1, 1]);
    expect(rowSlice(img, img.pixels, 254, 304, 310)).toEqual([1, 0, 0, 1, 1, 0]);
    expect(img.pixels.every((v) => v === 0 || v === 1)).toBe(true);
  });

  it('decodes Float Pixel Data (parametric_map_float.dcm) as Float32Array', async () => {
    const img = await load('parametric_map_float.dcm');
    expect(img.pixels).toBeInstanceOf(Float32Array);
    expect(img.header.bitsAllocated).toBe(32);
    expect(img.pixels.length).toBe(128 * 128);
    const expected = [0.92012787, 0.91510725, 0.9160201, 0.92104053];
    colSlice(img, img.pixels, 0, 0, 4).forEach((v, i) => expect(v).toBeCloseTo(expected[i] ?? NaN, 6));
  });

  it('decodes Double Float Pixel Data (7FE0,0009) as Float64Array', () => {
    // Same file with the element retagged to 7FE0,0009 and each float widened would change its length, so
    // instead reinterpret the 128 x 128 float32 bytes as 128 x 64 doubles by halving Columns.
    const bytes = Buffer.from(readFileSync(join(testdata, 'parametric_map_float.dcm')));
    const tag = Buffer.from([0xe0, 0x7f, 0x08, 0x00]);
    const at = bytes.lastIndexOf(tag);
    bytes[at + 2] = 0x09;
    const cols = Buffer.from([0x28, 0x00, 0x11, 0x00]);
    const colAt = bytes.indexOf(cols);
    bytes.writeUInt16LE(64, colAt + 8);
    const img = decodeDicom(bytes, { file: 'double.dcm' });
    expect(img.pixels).toBeInstanceOf(Float64Array);
    expect(img.header.bitsAllocated).toBe(64);
    const dataStart = at + 12;
    expect(img.pixels[0]).toBe(bytes.readDoubleLE(dataStart));
    expect(img.pixels[64 * 128 - 1]).toBe(bytes.readDoubleLE(dataStart + (64 * 128 - 1) * 8));
  });
});

describe('rejections', () => {
  const cases: Array<[string, DicomRejectionReason, RegExp]> = [
    ['MR_truncated.dcm', 'truncated', /file ends before/],
    ['rtplan_truncated.dcm', 'truncated', /file ends before/],
    ['test-SR.dcm', 'no-pixel-data', /no Pixel Data/],
    ['test1.json', 'not-dicom', /not DICOM/],
    ['zipMR.gz', 'not-dicom', /gzip/],
    ['meta_missing_tsyntax.dcm', 'not-dicom', /Transfer Syntax UID/],
    ['emri_small_jpeg_2k_lossless_too_short.dcm', 'truncated', /no Sequence Delimitation Item/],
  ];
  it.each(cases)('%s -> %s', async (name, reason, message) => {
    const error = await load(name).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DicomRejection);
    const rejection = error as DicomRejection;
    expect(rejection.reason).toBe(reason);
    expect(rejection.file).toBe(name);
    expect(rejection.message).toMatch(message);
    expect(rejection.message.startsWith(`${name}: `)).toBe(true);
  });

  it('rejects a transfer syntax without a codec by name', () => {
    // JPEG2000.dcm relabelled as JPEG 2000 Part 2 (same UID length), a syntax no codec is registered for.
    const bytes = Buffer.from(readFileSync(join(testdata, 'JPEG2000.dcm')));
    bytes.write('1.2.840.10008.1.2.4.93', bytes.indexOf('1.2.840.10008.1.2.4.91'), 'latin1');
    const call = () => decodeDicom(bytes, { file: 'part2.dcm' });
    expect(call).toThrow(expect.objectContaining({ reason: 'unsupported-transfer-syntax' }));
    expect(call).toThrow(/^part2\.dcm: unsupported transfer syntax 1\.2\.840\.10008\.1\.2\.4\.93 \(JPEG 2000 Part 2 Multi-component\)$/);
  });

  it('rejects empty and tiny buffers as not DICOM', () => {
    for (const bytes of [new Uint8Array(0), new Uint8Array([1, 2, 3])]) {
      expect(() => decodeDicom(bytes, { file: 'tiny' })).toThrow(expect.objectContaining({ reason: 'not-dicom' }));
    }
  });

  it('rejects a file cut inside the file meta header as truncated', () => {
    const bytes = readFileSync(join(testdata, 'CT_small.dcm')).subarray(0, 140);
    expect(() => decodeDicom(bytes, { file: 'cut' })).toThrow(expect.objectContaining({ reason: 'truncated' }));
  });

  it('throws RangeError for a frame index outside the image', async () => {
    const img = await load('MR_small.dcm');
    expect(() => img.decodeFrame(1)).toThrow(RangeError);
  });
});

describe('codec plug-in point', () => {
  it('hands encapsulated frames to a codec registered for the syntax', async () => {
    const seen: Array<{ frame: number; segments: number; fragments: number }> = [];
    // Stand-in for a real RLE codec: reads the RLE header (segment count) and returns a constant frame.
    const fake: PixelCodec = {
      name: 'fake-rle',
      decodeFrame(input, frameIndex) {
        if (input.pixelData.kind !== 'encapsulated') throw new Error('expected encapsulated data');
        const frame = input.pixelData.frame(frameIndex);
        const segments = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0, true);
        seen.push({ frame: frameIndex, segments, fragments: input.pixelData.fragmentCount });
        const { rows, columns } = input.header;
        const bytes = new Uint8Array(rows * columns * 2);
        bytes.fill(0xff); // 0xFFFF as int16 is -1 after masking and sign extension
        return { bytes, planar: false };
      },
    };
    const codecs = new Map([...defaultCodecs, ['1.2.840.10008.1.2.5', fake]]);
    const bytes = readFileSync(join(testdata, 'emri_small_RLE.dcm'));
    const img = decodeDicom(bytes, { file: 'emri_small_RLE.dcm', codecs });
    img.decodeFrame(9);
    // 16-bit monochrome RLE stores each frame as 2 byte-plane segments.
    expect(seen).toEqual([
      { frame: 0, segments: 2, fragments: 10 },
      { frame: 9, segments: 2, fragments: 10 },
    ]);
    expect(img.pixels).toBeInstanceOf(Uint16Array);
    expect(img.pixels[0]).toBe(4095); // 12 bits stored: the reader masks what the codec returned

    const mr = decodeDicom(readFileSync(join(testdata, 'MR_small_RLE.dcm')), { codecs });
    expect(mr.pixels[0]).toBe(-1); // signed 16-bit
  });
});
