import { describe, expect, it } from 'vitest';
import { decodeRleFrame, unpackBits } from './rle.js';
import { DicomRejection } from './rejection.js';

/** Builds an RLE frame: 64-byte header with offsets, then the given segments back to back. */
function rleFrame(segments: number[][]): Uint8Array {
  const body = segments.flat();
  const out = new Uint8Array(64 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, segments.length, true);
  let offset = 64;
  segments.forEach((seg, i) => {
    view.setUint32(4 + i * 4, offset, true);
    offset += seg.length;
  });
  out.set(body, 64);
  return out;
}

describe('unpackBits', () => {
  it('expands literal and replicate runs and skips -128', () => {
    const out = new Uint8Array(8);
    // literal 3 bytes, no-op, replicate 0x07 four times, literal 1 byte
    expect(unpackBits(Uint8Array.from([2, 1, 2, 3, 0x80, 0xfd, 7, 0, 9]), out)).toBe(8);
    expect(Array.from(out)).toEqual([1, 2, 3, 7, 7, 7, 7, 9]);
  });

  it('reports a short segment and never writes past the plane', () => {
    const out = new Uint8Array(4);
    expect(unpackBits(Uint8Array.from([0xfe, 5]), out)).toBe(3);
    expect(unpackBits(Uint8Array.from([0xf0, 5]), out)).toBe(4); // 17 copies clipped to 4
    expect(Array.from(out)).toEqual([5, 5, 5, 5]);
  });
});

describe('decodeRleFrame', () => {
  const shape16 = { rows: 1, columns: 2, samplesPerPixel: 1, bitsAllocated: 16 };

  it('puts the first segment in the most significant byte', () => {
    const frame = rleFrame([[1, 0x12, 0x34], [1, 0x56, 0x78]]);
    expect(Array.from(decodeRleFrame(frame, shape16, 'f', 0).bytes)).toEqual([0x56, 0x12, 0x78, 0x34]);
  });

  it('keeps colour planes planar, one segment per sample', () => {
    const frame = rleFrame([[1, 1, 2], [1, 3, 4], [1, 5, 6]]);
    const out = decodeRleFrame(frame, { rows: 1, columns: 2, samplesPerPixel: 3, bitsAllocated: 8 }, 'f', 0);
    expect(out.planar).toBe(true);
    expect(Array.from(out.bytes)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('refuses a segment count that does not match the pixel format', () => {
    expect(() => decodeRleFrame(rleFrame([[1, 1, 2]]), shape16, 'f', 0)).toThrow(/1 segments but 1 sample\(s\) of 16 bits need 2/);
  });

  it('refuses short segments, bad offsets and a missing header as corrupt (the fragment itself is complete)', () => {
    const short = rleFrame([[0, 1], [1, 2, 3]]);
    expect(() => decodeRleFrame(short, shape16, 'f', 0)).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    const bad = rleFrame([[1, 1, 2], [1, 3, 4]]);
    new DataView(bad.buffer).setUint32(8, 9999, true);
    expect(() => decodeRleFrame(bad, shape16, 'f', 0)).toThrow(expect.objectContaining({ reason: 'corrupt' }));
    expect(() => decodeRleFrame(new Uint8Array(10), shape16, 'f', 0)).toThrow(/less than its 64-byte header/);
  });
});
