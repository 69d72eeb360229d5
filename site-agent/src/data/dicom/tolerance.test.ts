import { describe, expect, it } from 'vitest';
import { bareDataset, corpus, lastFragment, withFragmentTail, withoutElement } from './damage.testkit.js';
import { jpegEndOfImage } from './jpeg.js';
import { decodeAllFrames, decodeDicom } from './reader.js';
import { DicomRejection } from './rejection.js';

/** All frames of a decoded file as one buffer, to compare images byte for byte. */
function pixelBytes(bytes: Uint8Array, file: string): Buffer {
  return Buffer.concat(decodeAllFrames(decodeDicom(bytes, { file })).map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength)));
}

describe('bytes after the JPEG EOI marker inside a fragment are padding, as other toolkits read them', () => {
  const files = ['SC_rgb_jpeg_dcmtk.dcm', 'JPEGBaseline_1s_1f_u_08_08.dcm', 'SC_rgb_jpeg_gdcm.dcm', 'JPGExtended.dcm'];
  const tails: Array<[string, number[]]> = [
    ['three zero bytes', [0x00, 0x00, 0x00]],
    ['three FF bytes', [0xff, 0xff, 0xff]],
    ['arbitrary bytes', [0x12, 0x34, 0x56]],
    ['ten zero bytes', Array.from({ length: 10 }, () => 0)],
    ['a second EOI', [0xff, 0xd9, 0x00]],
  ];

  it.each(files)('%s: padding of any value after EOI (zeros, FF, arbitrary bytes, more than 8) decodes as without it', (file) => {
    const original = corpus(file);
    const reference = pixelBytes(original, file);
    // Strip the encoder's own even-length padding first, so the fragment ends exactly at FFD9 before the tail.
    const trim = original[lastFragment(original).delimiter - 1] === 0xd9 ? 0 : 1;
    for (const [what, tail] of tails) {
      const padded = withFragmentTail(original, tail, trim);
      expect(padded.length, what).not.toBe(original.length);
      expect(pixelBytes(padded, file).equals(reference), what).toBe(true);
    }
  });

  it('a stream that stops before EOI is still refused as damaged, whatever bytes follow the cut', () => {
    const original = corpus('SC_rgb_jpeg_dcmtk.dcm');
    const cut = withFragmentTail(original, [0x12, 0x34, 0x56], 400);
    expect(() => decodeDicom(cut, { file: 'cut.dcm' })).toThrow(expect.objectContaining({ reason: 'corrupt', message: expect.stringMatching(/does not end with the EOI marker/) }));
  });

  it('jpegEndOfImage walks segments and entropy-coded data to the real EOI', () => {
    // SOI, APP1 whose body holds FF D9, SOS (length 3 + 1 component) with stuffed FF00 and an RST marker, EOI, junk.
    const stream = Uint8Array.of(0xff, 0xd8, 0xff, 0xe1, 0, 4, 0xff, 0xd9, 0xff, 0xda, 0, 3, 1, 0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56, 0xff, 0xd9, 0xab, 0xcd);
    expect(jpegEndOfImage(stream)).toBe(22);
    expect(jpegEndOfImage(stream.subarray(0, 20))).toBeUndefined();
    expect(jpegEndOfImage(Uint8Array.of(0x00, 0x01))).toBeUndefined();
  });
});

describe('ACR-NEMA files (no preamble, no file meta) without Photometric Interpretation', () => {
  const part10 = corpus('MR_small_implicit.dcm');
  const reference = pixelBytes(part10, 'MR_small_implicit.dcm');

  it('reads a single-sample image as MONOCHROME2, the only interpretation ACR-NEMA had, and only such an image', () => {
    const acrNema = bareDataset(withoutElement(part10, 'x00280004'));
    expect(acrNema.subarray(0, 2).equals(Buffer.from([0x08, 0x00]))).toBe(true);
    const image = decodeDicom(acrNema, { file: 'acr-nema.img' });
    expect(image.header.photometricInterpretation).toBe('MONOCHROME2');
    expect(pixelBytes(acrNema, 'acr-nema.img').equals(reference)).toBe(true);

    // Colour had several interpretations, and a Part 10 file must carry the attribute: both stay refused.
    const colour = bareDataset(withoutElement(corpus('SC_rgb.dcm'), 'x00280004'));
    expect(() => decodeDicom(colour, { file: 'rgb.img' })).toThrow(expect.objectContaining({ reason: 'unsupported-pixel-format', message: expect.stringMatching(/Photometric Interpretation \(0028,0004\) is missing/) }));
    const modern = withoutElement(part10, 'x00280004');
    expect(() => decodeDicom(modern, { file: 'modern.dcm' })).toThrow(DicomRejection);
    expect(() => decodeDicom(modern, { file: 'modern.dcm' })).toThrow(/Photometric Interpretation \(0028,0004\) is missing/);
  });
});
