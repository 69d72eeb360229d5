import type { CodecFrame, CodecInput, PixelCodec } from './codecs.js';
import { DicomRejection } from './rejection.js';

/** The RLE header is 16 little-endian uint32s: the segment count, then up to 15 segment offsets. */
const RLE_HEADER_BYTES = 64;
const MAX_SEGMENTS = 15;
/** Below this length a byte loop copies faster than subarray()+set() or fill(). */
const SHORT_RUN = 16;

/**
 * Decodes one PackBits segment (PS3.5 G.3.1) into exactly `out.length` bytes. Returns how many bytes it produced,
 * so the caller can tell a short segment from a complete one; output beyond `out.length` (encoders may pad the
 * last run) is dropped rather than written past the plane.
 */
export function unpackBits(src: Uint8Array, out: Uint8Array): number {
  let i = 0;
  let o = 0;
  while (i < src.length && o < out.length) {
    const header = src[i++] ?? 0;
    const n = header > 127 ? header - 256 : header;
    if (n >= 0) {
      // Literal run of n + 1 bytes; a run cut off by the segment end is copied as far as it goes.
      const count = Math.min(n + 1, src.length - i, out.length - o);
      // Typical runs are a few bytes: a plain loop beats creating a subarray for each of them.
      if (count < SHORT_RUN) for (let k = 0; k < count; k++) out[o + k] = src[i + k]!;
      else out.set(src.subarray(i, i + count), o);
      i += n + 1;
      o += count;
    } else if (n !== -128) {
      // Replicate run: the next byte 1 - n times. -128 is a no-op by definition.
      if (i >= src.length) break;
      const value = src[i++] ?? 0;
      const count = Math.min(1 - n, out.length - o);
      if (count < SHORT_RUN) for (let k = 0; k < count; k++) out[o + k] = value;
      else out.fill(value, o, o + count);
      o += count;
    }
  }
  return o;
}

/**
 * Decodes one RLE Lossless frame into planar little-endian samples. Segments come per sample and, within a
 * sample, most significant byte first, so segment s holds byte (bytesPerSample - 1 - s % bytesPerSample) of
 * sample plane floor(s / bytesPerSample).
 */
export function decodeRleFrame(
  frame: Uint8Array,
  shape: { rows: number; columns: number; samplesPerPixel: number; bitsAllocated: number },
  file: string,
  frameIndex: number,
): CodecFrame {
  const pixels = shape.rows * shape.columns;
  const bytesPerSample = shape.bitsAllocated / 8;
  const expectedSegments = shape.samplesPerPixel * bytesPerSample;
  if (frame.length < RLE_HEADER_BYTES) {
    throw new DicomRejection(file, 'corrupt', `RLE frame ${frameIndex} has ${frame.length} bytes, less than its 64-byte header; the image data is damaged`);
  }
  const view = new DataView(frame.buffer, frame.byteOffset, RLE_HEADER_BYTES);
  const segments = view.getUint32(0, true);
  if (segments !== expectedSegments || segments > MAX_SEGMENTS) {
    throw new DicomRejection(
      file,
      'corrupt',
      `RLE frame ${frameIndex} has ${segments} segments but ${shape.samplesPerPixel} sample(s) of ${shape.bitsAllocated} bits need ${expectedSegments}; the header and the image data do not match`,
    );
  }
  const offsets: number[] = [];
  for (let s = 0; s < segments; s++) offsets.push(view.getUint32(4 + s * 4, true));
  offsets.push(frame.length);

  const out = new Uint8Array(pixels * expectedSegments);
  // 8-bit samples decode straight into their plane of the output; wider ones go through a scratch plane.
  const scratch = bytesPerSample > 1 ? new Uint8Array(pixels) : undefined;
  for (let s = 0; s < segments; s++) {
    const start = offsets[s] ?? 0;
    const end = offsets[s + 1] ?? frame.length;
    if (start < RLE_HEADER_BYTES || start > end || end > frame.length) {
      throw new DicomRejection(file, 'corrupt', `RLE frame ${frameIndex}: segment ${s} offset ${start} lies outside the ${frame.length}-byte frame; the image data is damaged`);
    }
    const sample = Math.floor(s / bytesPerSample);
    const plane = scratch ?? out.subarray(sample * pixels, (sample + 1) * pixels);
    const produced = unpackBits(frame.subarray(start, end), plane);
    if (produced < pixels) {
      throw new DicomRejection(file, 'corrupt', `RLE frame ${frameIndex}: segment ${s} decodes to ${produced} bytes, expected ${pixels}; the image data is damaged`);
    }
    if (scratch === undefined) continue;
    const byteInSample = bytesPerSample - 1 - (s % bytesPerSample);
    const base = sample * pixels * bytesPerSample + byteInSample;
    for (let p = 0; p < pixels; p++) out[base + p * bytesPerSample] = scratch[p]!;
  }
  return { bytes: out, planar: true };
}

/** RLE Lossless (1.2.840.10008.1.2.5): always planar per sample, whatever Planar Configuration says. */
export const rleCodec: PixelCodec = {
  name: 'rle',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    const { header: h, pixelData, file } = input;
    if (pixelData.kind !== 'encapsulated') {
      throw new DicomRejection(file, 'unsupported-pixel-format', 'RLE Lossless requires encapsulated (undefined-length) Pixel Data');
    }
    return decodeRleFrame(pixelData.frame(frameIndex), h, file, frameIndex);
  },
};
