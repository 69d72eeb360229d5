import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { corpus, lastFragment, lengthField, withLength } from './damage.testkit.js';
import { decodeAllFrames, decodeDicom, MAX_INFLATED_BYTES } from './reader.js';
import { DicomRejection, type DicomRejectionReason } from './rejection.js';
import { endOfFileMeta } from './sniff.js';

/** The rejection a decode ends in (every frame is decoded, as the dataset scan does). */
function rejectionOf(bytes: Uint8Array, options: { maxInflatedBytes?: number } = {}): DicomRejection {
  try {
    decodeAllFrames(decodeDicom(bytes, { file: 'damaged.dcm', ...options }));
  } catch (error) {
    if (error instanceof DicomRejection) return error;
    throw new Error(`expected a DicomRejection, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a rejection, but the file decoded');
}

function expectRejected(bytes: Uint8Array, reason: DicomRejectionReason, message: RegExp): DicomRejection {
  const rejection = rejectionOf(bytes);
  expect({ reason: rejection.reason, message: rejection.message }).toEqual({ reason, message: expect.stringMatching(message) });
  // Messages are for hospital IT: never a wasm pointer, whatever the codec threw.
  expect(rejection.message).not.toMatch(/native exception|0x[0-9a-f]{3,}/i);
  return rejection;
}

describe('deflated datasets cannot expand without bound', () => {
  /** image_dfl.dcm's file meta followed by `deflated` as the dataset. */
  function deflatedFile(deflated: Uint8Array): Buffer {
    const original = corpus('image_dfl.dcm');
    return Buffer.concat([original.subarray(0, endOfFileMeta(original, 132)), deflated]);
  }

  it('refuses a small deflate stream that expands past the limit as corrupt, with no RangeError escaping', () => {
    // 8 MiB of zeros deflate to about 8 KiB: a zip bomb in miniature against a 1 MiB limit.
    const bomb = deflatedFile(deflateRawSync(Buffer.alloc(8 * 1024 * 1024)));
    expect(bomb.length).toBeLessThan(20_000);
    const rejection = rejectionOf(bomb, { maxInflatedBytes: 1024 * 1024 });
    expect(rejection.reason).toBe('corrupt');
    expect(rejection.message).toMatch(/^damaged\.dcm: the deflate-compressed dataset expands to more than 1 MiB, the most the reader accepts/);
    expect(rejection.cause).toBeInstanceOf(RangeError);
  });

  it('applies the limit to real data: 1 GiB by default, which image_dfl.dcm stays far below', () => {
    expect(MAX_INFLATED_BYTES).toBe(1024 ** 3);
    const real = corpus('image_dfl.dcm');
    expect(rejectionOf(real, { maxInflatedBytes: 256 * 1024 }).reason).toBe('corrupt');
    expect(decodeDicom(real, { maxInflatedBytes: 1024 * 1024 }).header.rows).toBe(512);
  });

  it('calls a deflate stream that stops early truncated and a damaged one corrupt', () => {
    const real = corpus('image_dfl.dcm');
    expectRejected(real.subarray(0, real.length - 1000), 'truncated', /file ends inside the deflate-compressed dataset/);
    const start = endOfFileMeta(real, 132);
    const damaged = Buffer.from(real);
    damaged.fill(0xff, start, start + 16);
    expectRejected(damaged, 'corrupt', /the deflate-compressed dataset is damaged and cannot be expanded/);
  });
});

describe('a wrong length in a complete file is corrupt, a file that ends early is truncated', () => {
  const implicit = corpus('MR_small_implicit.dcm');
  const explicit = corpus('CT_small.dcm');

  it.each([2, 3, 0x10000])('implicit VR: SOP Class UID length +%i is a damaged header, not "no pixel data"', (delta) => {
    const { length } = lengthField(implicit, 'x00080016');
    expectRejected(withLength(implicit, 'x00080016', length + delta), 'corrupt', /^damaged\.dcm: the DICOM header is damaged/);
  });

  it.each([2, 100, 0x1000])('explicit VR: Study Description length +%i is a damaged header, not truncation', (delta) => {
    const { length } = lengthField(explicit, 'x00081030');
    expectRejected(withLength(explicit, 'x00081030', length + delta), 'corrupt', /the DICOM header is damaged although the file is complete/);
  });

  it('the same files cut short are still truncated, in the header and in the Pixel Data', () => {
    for (const file of [implicit, explicit]) {
      expectRejected(file.subarray(0, 905), 'truncated', /file ends/);
      expectRejected(file.subarray(0, file.length - 300), 'truncated', /file ends/);
    }
  });

  it('native Pixel Data shorter than the header describes, in a complete file, is corrupt', () => {
    // Drop the last 4 pixel bytes and shrink the element to match: nothing is cut off, the sizes just disagree.
    const pixel = lengthField(implicit, 'x7fe00010');
    const short = withLength(implicit, 'x7fe00010', pixel.length - 4).subarray(0, implicit.length - 4);
    expectRejected(short, 'corrupt', /Pixel Data holds 8188 bytes but the header describes 1 frame\(s\) of 64 x 64.*do not match/);
  });

  it('an encapsulated fragment length that swallows the delimiter is corrupt; the file cut in that fragment is truncated', () => {
    const jpeg = corpus('SC_rgb_jpeg_dcmtk.dcm');
    const { item, length } = lastFragment(jpeg);
    const stretched = Buffer.from(jpeg);
    stretched.writeUInt32LE(length + 16, item + 4);
    expectRejected(stretched, 'corrupt', /the encapsulated Pixel Data is damaged although the file is complete: a fragment length runs past the end of the file/);
    expectRejected(jpeg.subarray(0, jpeg.length - 100), 'truncated', /file ends inside the encapsulated Pixel Data/);
  });

  it('a fragment length that lands inside the image data is corrupt', () => {
    const rle = corpus('emri_small_RLE.dcm');
    const first = rle.indexOf(Buffer.from([0xfe, 0xff, 0x00, 0xe0]), lastFragment(rle).item - 10_000);
    const damaged = Buffer.from(rle);
    damaged.writeUInt32LE(damaged.readUInt32LE(first + 4) - 100, first + 4);
    expectRejected(damaged, 'corrupt', /the encapsulated Pixel Data is damaged: a fragment length is wrong/);
  });
});

describe('a compressed stream its codec cannot read is corrupt, in words, with the codec error as cause', () => {
  /** A copy with `count` bytes of the last fragment, `from` bytes after its start, set to `value`. */
  function flip(name: string, from: number, count: number, value: number): Buffer {
    const bytes = corpus(name);
    const { data } = lastFragment(bytes);
    bytes.fill(value, data + from, data + from + count);
    return bytes;
  }

  it('JPEG baseline (libjpeg-turbo)', () => {
    const rejection = expectRejected(flip('SC_rgb_jpeg_dcmtk.dcm', 700, 500, 0xff), 'corrupt', /^damaged\.dcm: the JPEG stream of frame 1 of 1 is damaged and cannot be decoded \(libjpeg-turbo could not read it\)$/);
    expect(typeof rejection.cause).toBe('number');
  });

  it('JPEG-LS (CharLS)', () => {
    expectRejected(flip('MR_small_jpeg_ls_lossless.dcm', 300, 400, 0xff), 'corrupt', /the JPEG-LS stream of frame 1 of 1 is damaged and cannot be decoded \(CharLS could not read it\)$/);
  });

  it('JPEG 2000 and HTJ2K (OpenJPEG and OpenJPH), damaged in the main header', () => {
    // Byte 1 of the codestream turns the SIZ marker into garbage: both decoders give up on the image.
    expectRejected(flip('MR_small_jp2klossless.dcm', 1, 1, 0x00), 'corrupt', /the JPEG 2000 stream of frame 1 of 1 is damaged and cannot be decoded \(OpenJPEG could not read it\)$/);
    expectRejected(flip('HTJ2KLossless_08_RGB.dcm', 1, 1, 0x00), 'corrupt', /the HTJ2K stream of frame 1 of 1 is damaged and cannot be decoded/);
  });

  it('JPEG Lossless, RLE and 12-bit JPEG Extended', () => {
    // A Huffman table class beyond 1 in the lossless stream's DHT segment.
    const lossless = corpus('SC_rgb_jpeg_gdcm.dcm');
    const dht = lossless.indexOf(Buffer.from([0xff, 0xc4]), lastFragment(lossless).data);
    lossless[dht + 4] = 0x3f;
    expectRejected(lossless, 'corrupt', /the JPEG Lossless stream of frame 1 of 1 is damaged and cannot be decoded/);
    // An RLE header that counts 7 segments for a 16-bit single-sample frame.
    const rle = corpus('MR_small_RLE.dcm');
    rle.writeUInt32LE(7, lastFragment(rle).data);
    expectRejected(rle, 'corrupt', /RLE frame 0 has 7 segments but 1 sample\(s\) of 16 bits need 2; the header and the image data do not match/);
    expectRejected(flip('JPGExtended.dcm', 2000, 1000, 0x00), 'corrupt', /JPEG frame 0 (is corrupt|has entropy-coded data)/);
  });

  it('the damaged JPEG 2000 test file is corrupt too', () => {
    expectRejected(corpus('JPEG2000-embedded-sequence-delimiter.dcm'), 'corrupt', /JPEG 2000 stream of frame 1 of 1 is damaged/);
  });
});
