import { describe, expect, it } from 'vitest';
import { endsWithEoc } from './encapsulated.js';
import { jpegSamplePrecision } from './jpeg.js';

describe('endsWithEoc', () => {
  it('accepts EOC with or without a little padding', () => {
    expect(endsWithEoc(Uint8Array.from([0xff, 0x4f, 0xff, 0xd9]))).toBe(true);
    expect(endsWithEoc(Uint8Array.from([0xff, 0x4f, 0xff, 0xd9, 0x00]))).toBe(true);
    expect(endsWithEoc(Uint8Array.from([0xff, 0x4f, 0xff, 0xd9, 0xff]))).toBe(true);
  });

  it('rejects a stream cut before EOC or followed by data', () => {
    expect(endsWithEoc(Uint8Array.from([0xff, 0x4f, 0xff, 0x90, 0x12, 0x34]))).toBe(false);
    expect(endsWithEoc(Uint8Array.from([0xff, 0xd9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))).toBe(false);
    expect(endsWithEoc(new Uint8Array(0))).toBe(false);
  });
});

describe('jpegSamplePrecision', () => {
  it('reads P from the frame header after other segments', () => {
    // SOI, APP0 (length 4), SOF1 with precision 12
    expect(jpegSamplePrecision(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff, 0xc1, 0, 11, 12, 0, 8]))).toBe(12);
    expect(jpegSamplePrecision(Uint8Array.from([0xff, 0xd8, 0xff, 0xc4, 0, 2, 0xff, 0xc0, 0, 11, 8, 0, 8]))).toBe(8);
  });

  it('gives up at the scan or on garbage', () => {
    expect(jpegSamplePrecision(Uint8Array.from([0xff, 0xd8, 0xff, 0xda, 0, 2, 0, 0, 0]))).toBeUndefined();
    expect(jpegSamplePrecision(Uint8Array.from([0xff, 0xd8, 0x12, 0x34, 0, 2, 0, 0, 0]))).toBeUndefined();
  });
});
