import { describe, expect, it } from 'vitest';
import { nativeCodec } from './codecs.js';
import type { DicomHeader } from './header.js';
import { unpackBits, unpackFrame, unsupportedPixelFormat, upsampleYbr422 } from './pixels.js';
import { DicomRejection } from './rejection.js';
import { guessRawDataset } from './sniff.js';

function header(overrides: Partial<DicomHeader>): DicomHeader {
  const base: DicomHeader = {
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    transferSyntaxName: 'Explicit VR Little Endian',
    sopClassUid: undefined,
    sopInstanceUid: undefined,
    seriesInstanceUid: undefined,
    studyInstanceUid: undefined,
    modality: undefined,
    rows: 1,
    columns: 4,
    samplesPerPixel: 1,
    photometricInterpretation: 'MONOCHROME2',
    planarConfiguration: 0,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 0,
    signed: false,
    numberOfFrames: 1,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: undefined,
    windowWidth: undefined,
  };
  const merged = { ...base, ...overrides };
  return { ...merged, signed: merged.pixelRepresentation === 1 };
}

const le16 = (...values: number[]): Uint8Array => {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(i * 2, v, true));
  return out;
};

describe('unpackFrame', () => {
  it('masks unused high bits (overlay/garbage) for 12-bit unsigned data', () => {
    const out = unpackFrame(le16(0xf123, 0x0fff, 0x1000, 0x0001), header({ bitsStored: 12, highBit: 11 }), false);
    expect(out).toBeInstanceOf(Uint16Array);
    expect(Array.from(out)).toEqual([0x123, 0xfff, 0x000, 0x001]);
  });

  it('sign-extends 12-bit two complement values into Int16Array', () => {
    const h = header({ bitsStored: 12, highBit: 11, pixelRepresentation: 1 });
    const out = unpackFrame(le16(0x0800, 0x0fff, 0xf7ff, 0x0005), h, false);
    expect(out).toBeInstanceOf(Int16Array);
    expect(Array.from(out)).toEqual([-2048, -1, 2047, 5]);
  });

  it('shifts by High Bit when the stored bits are not at the bottom', () => {
    // 12 bits stored in bits 4..15 (High Bit 15).
    const out = unpackFrame(le16(0x1230, 0xfff0, 0x0010, 0x000f), header({ bitsStored: 12, highBit: 15 }), false);
    expect(Array.from(out)).toEqual([0x123, 0xfff, 0x001, 0x000]);
  });

  it('handles signed and unsigned 32-bit samples without int32 wrap-around', () => {
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 0xfffffffe, true);
    view.setUint32(4, 3_000_000_000, true);
    const unsigned = unpackFrame(bytes, header({ columns: 2, bitsAllocated: 32, bitsStored: 32, highBit: 31 }), false);
    expect(Array.from(unsigned)).toEqual([0xfffffffe, 3_000_000_000]);
    const signed = unpackFrame(bytes, header({ columns: 2, bitsAllocated: 32, bitsStored: 32, highBit: 31, pixelRepresentation: 1 }), false);
    expect(signed).toBeInstanceOf(Int32Array);
    expect(Array.from(signed)).toEqual([-2, 3_000_000_000 - 2 ** 32]);
    const masked = unpackFrame(bytes, header({ columns: 2, bitsAllocated: 32, bitsStored: 24, highBit: 23, pixelRepresentation: 1 }), false);
    expect(Array.from(masked)).toEqual([-2, (3_000_000_000 % 2 ** 24) - 2 ** 24]);
  });

  it('interleaves planar RGB', () => {
    const planar = Uint8Array.from([1, 2, 10, 20, 100, 200]); // RR GG BB for two pixels
    const out = unpackFrame(planar, header({ columns: 2, samplesPerPixel: 3, photometricInterpretation: 'RGB', bitsAllocated: 8, bitsStored: 8, highBit: 7 }), true);
    expect(Array.from(out)).toEqual([1, 10, 100, 2, 20, 200]);
  });

  it('sign-extends signed 8-bit data', () => {
    const out = unpackFrame(Uint8Array.from([0x80, 0x7f, 0xff, 0x00]), header({ bitsAllocated: 8, bitsStored: 8, highBit: 7, pixelRepresentation: 1 }), false);
    expect(out).toBeInstanceOf(Int8Array);
    expect(Array.from(out)).toEqual([-128, 127, -1, 0]);
  });

  it('refuses a frame shorter than the header says', () => {
    expect(() => unpackFrame(le16(1, 2, 3), header({}), false)).toThrow(RangeError);
  });
});

describe('upsampleYbr422', () => {
  it('shares each chroma pair between two pixels', () => {
    const out = upsampleYbr422(Uint8Array.from([10, 20, 128, 130, 30, 40, 1, 2]), header({ columns: 4, samplesPerPixel: 3, photometricInterpretation: 'YBR_FULL_422', bitsAllocated: 8, bitsStored: 8, highBit: 7 }));
    expect(Array.from(out)).toEqual([10, 128, 130, 20, 128, 130, 30, 1, 2, 40, 1, 2]);
  });
});

describe('nativeCodec', () => {
  const base = { file: 'x.dcm', littleEndian: false } as const;

  it('swaps 16-bit big-endian samples', () => {
    const frame = nativeCodec.decodeFrame({ ...base, header: header({ columns: 2 }), pixelData: { kind: 'native', bytes: Uint8Array.from([0x01, 0x02, 0x03, 0x04]), vr: 'OW' } }, 0);
    expect(Array.from(frame.bytes)).toEqual([0x02, 0x01, 0x04, 0x03]);
  });

  it('swaps 8-bit samples held in big-endian OW words but not in OB', () => {
    const h = header({ columns: 4, bitsAllocated: 8, bitsStored: 8, highBit: 7 });
    const bytes = Uint8Array.from([1, 2, 3, 4]);
    expect(Array.from(nativeCodec.decodeFrame({ ...base, header: h, pixelData: { kind: 'native', bytes, vr: 'OW' } }, 0).bytes)).toEqual([2, 1, 4, 3]);
    expect(Array.from(nativeCodec.decodeFrame({ ...base, header: h, pixelData: { kind: 'native', bytes, vr: 'OB' } }, 0).bytes)).toEqual([1, 2, 3, 4]);
  });

  it('rejects pixel data shorter than all declared frames: truncated when the file ends inside it, else corrupt', () => {
    const h = header({ columns: 2, numberOfFrames: 3 });
    const decode = (cutShort: boolean) => () =>
      nativeCodec.decodeFrame({ ...base, littleEndian: true, header: h, pixelData: { kind: 'native', bytes: new Uint8Array(8), vr: 'OW', cutShort } }, 0);
    expect(decode(true)).toThrow(expect.objectContaining({ reason: 'truncated' }));
    expect(decode(true)).toThrow(/file ends inside the Pixel Data: it holds 8 bytes but 3 frame\(s\)/);
    // A complete file whose Pixel Data is shorter than its header says: the two disagree, nothing was cut off.
    expect(decode(false)).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    expect(decode(false)).toThrow(/Pixel Data holds 8 bytes but the header describes 3 frame\(s\).*do not match/);
  });
});

describe('unsupportedPixelFormat', () => {
  it.each([
    [{ bitsAllocated: 12 }, /Bits Allocated 12/],
    [{ bitsStored: 17 }, /Bits Stored 17/],
    [{ bitsStored: 12, highBit: 10 }, /High Bit 10/],
    [{ samplesPerPixel: 4, photometricInterpretation: 'ARGB' }, /Samples per Pixel 4/],
    [{ photometricInterpretation: 'RGB' }, /RGB with 1 sample/],
    [{ rows: 0 }, /empty image/],
  ] as Array<[Partial<DicomHeader>, RegExp]>)('%o is refused', (overrides, message) => {
    expect(unsupportedPixelFormat(header(overrides))).toMatch(message);
  });

  it('accepts ordinary monochrome and colour images', () => {
    expect(unsupportedPixelFormat(header({ bitsStored: 12, highBit: 11 }))).toBeUndefined();
    expect(unsupportedPixelFormat(header({ samplesPerPixel: 3, photometricInterpretation: 'RGB', bitsAllocated: 8, bitsStored: 8, highBit: 7 }))).toBeUndefined();
  });
});

describe('guessRawDataset', () => {
  it('finds an implicit VR dataset and one after a stray byte', () => {
    // (0008,0016) UI length 4, (0008,0018) UI length 4, (0028,0010) US length 2: implicit VR.
    const implicit = Uint8Array.from([8, 0, 0x16, 0, 4, 0, 0, 0, 0x31, 0x2e, 0x32, 0, 8, 0, 0x18, 0, 4, 0, 0, 0, 0x31, 0x2e, 0x33, 0, 0x28, 0, 0x10, 0, 2, 0, 0, 0, 64, 0]);
    expect(guessRawDataset(implicit)).toEqual({ offset: 0, transferSyntaxUid: '1.2.840.10008.1.2', startsWithFileMeta: false });
    expect(guessRawDataset(Uint8Array.from([0x20, ...implicit]))?.offset).toBe(1);
  });

  it('does not mistake text or noise for DICOM', () => {
    expect(guessRawDataset(new TextEncoder().encode('{"00080016": {"vr": "UI", "Value": ["1.2.3"]}}'))).toBeUndefined();
    let state = 12345;
    const noise = Uint8Array.from({ length: 4096 }, () => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state & 0xff;
    });
    expect(guessRawDataset(noise)).toBeUndefined();
  });
});

describe('bit-packed pixels (Bits Allocated 1)', () => {
  const oneBit = (overrides: Partial<DicomHeader>): DicomHeader =>
    header({ bitsAllocated: 1, bitsStored: 1, highBit: 0, ...overrides });

  it('reads bits least significant first within each byte', () => {
    expect(Array.from(unpackBits(Uint8Array.of(0b0000_0101, 0b1000_0000), 0, 16))).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(Array.from(unpackBits(Uint8Array.of(0b0000_0101), 2, 3))).toEqual([1, 0, 0]);
    expect(() => unpackBits(Uint8Array.of(0), 4, 5)).toThrow(RangeError);
  });

  it('starts frame k at bit k * rows * columns, so 3 x 3 frames straddle bytes', () => {
    // Two 3x3 frames = 18 bits. Frame 0 is a diagonal (bits 0, 4, 8), frame 1 its anti-diagonal (bits 2, 4, 6 of
    // the frame = stream bits 11, 13, 15), so frame 1 begins at bit 1 of byte 1.
    const stream = new Uint8Array(4);
    for (const bit of [0, 4, 8, 11, 13, 15]) stream[bit >> 3] = (stream[bit >> 3] ?? 0) | (1 << (bit & 7));
    const h = oneBit({ rows: 3, columns: 3, numberOfFrames: 2 });
    const input = { file: 'seg.dcm', header: h, littleEndian: true, pixelData: { kind: 'native' as const, bytes: stream, vr: 'OB' } };
    const frame0 = nativeCodec.decodeFrame(input, 0);
    const frame1 = nativeCodec.decodeFrame(input, 1);
    expect(Array.from(unpackFrame(frame0.bytes, h, frame0.planar))).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect(Array.from(unpackFrame(frame1.bytes, h, frame1.planar))).toEqual([0, 0, 1, 0, 1, 0, 1, 0, 0]);
  });

  it('refuses 1-bit data shorter than all frames need, and 1-bit colour or palette', () => {
    const h = oneBit({ rows: 3, columns: 3, numberOfFrames: 2 });
    const input = { file: 'seg.dcm', header: h, littleEndian: true, pixelData: { kind: 'native' as const, bytes: new Uint8Array(2), vr: 'OB', cutShort: true } };
    expect(() => nativeCodec.decodeFrame(input, 0)).toThrow(expect.objectContaining({ reason: 'truncated' }));
    const complete = { ...input, pixelData: { ...input.pixelData, cutShort: false } };
    expect(() => nativeCodec.decodeFrame(complete, 0)).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    expect(unsupportedPixelFormat(oneBit({}))).toBeUndefined();
    expect(unsupportedPixelFormat(oneBit({ photometricInterpretation: 'PALETTE COLOR' }))).toMatch(/Bits Allocated 1/);
    expect(unsupportedPixelFormat(oneBit({ bitsStored: 1, highBit: 3 }))).toMatch(/High Bit 0/);
  });
});
