import { createRequire } from 'node:module';
import type { CodecFrame, CodecInput, PixelCodec } from './codecs.js';
import { checkGeometry, encapsulatedFrame, endsWithEoc, widenSamples } from './encapsulated.js';
import { decodeJpegExtendedFrame, UNSUPPORTED_FRAMES } from './jpeg-extended.js';
import { damagedStream, DicomRejection, frameLabel } from './rejection.js';
import { lazyModule, type EmbindObject, type WasmFrameInfo } from './wasm.js';

interface JpegTurboDecoder extends EmbindObject {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): WasmFrameInfo;
}
interface LibJpegTurboModule {
  readonly JPEGDecoder: new () => JpegTurboDecoder;
}

const libjpeg = lazyModule<LibJpegTurboModule>(
  '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs',
  '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasm',
  'JPEGDecoder',
);

/** Index of the next marker in entropy-coded data from `from`: an FF not followed by a stuffed 00 or an RSTn. */
function nextMarkerInScan(stream: Uint8Array, from: number): number | undefined {
  let i = stream.indexOf(0xff, from);
  while (i >= 0 && i + 1 < stream.length) {
    const next = stream[i + 1]!;
    // FF FF is fill before a marker; the byte after the fill decides.
    if (next !== 0x00 && next !== 0xff && (next < 0xd0 || next > 0xd7)) return i;
    i = stream.indexOf(0xff, next === 0xff ? i + 1 : i + 2);
  }
  return undefined;
}

/**
 * Offset just past the EOI marker (FFD9) of a JPEG stream, found by walking its marker segments and the
 * entropy-coded data of each scan, or undefined when the stream ends first. Walking instead of searching backwards
 * keeps bytes that happen to read FFD9 inside an APPn segment from counting, and finds EOI whatever follows it.
 */
export function jpegEndOfImage(stream: Uint8Array): number | undefined {
  if (stream[0] !== 0xff || stream[1] !== 0xd8) return undefined;
  let i = 2;
  while (i < stream.length) {
    if (stream[i] !== 0xff) return undefined;
    while (stream[i] === 0xff) i++;
    const marker = stream[i++];
    if (marker === undefined) return undefined;
    if (marker === 0xd9) return i;
    // RSTn and TEM stand alone; every other marker carries a length that counts its own two bytes.
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue;
    if (i + 2 > stream.length) return undefined;
    i += (stream[i]! << 8) | stream[i + 1]!;
    if (marker === 0xda) {
      const next = nextMarkerInScan(stream, i);
      if (next === undefined) return undefined;
      i = next;
    }
  }
  return undefined;
}

/**
 * The frame up to and including its EOI marker. Archives pad fragments after EOI with bytes of any value, which
 * other toolkits ignore, so they are dropped here. A stream without EOI was cut short before it was stored (the
 * fragments themselves are complete by now), and the decoders would return a partial image for it, so it is refused.
 */
function throughEndOfImage(input: CodecInput, encoded: Uint8Array, frameIndex: number, label: string): Uint8Array {
  const end = jpegEndOfImage(encoded);
  if (end !== undefined) return encoded.subarray(0, end);
  // Damaged entropy data can hide EOI from the walk; an EOI at the very end still shows the stream is whole.
  if (endsWithEoc(encoded)) return encoded;
  throw new DicomRejection(
    input.file,
    'corrupt',
    `the ${label} stream of ${frameLabel(frameIndex, input.header.numberOfFrames)} (${encoded.length} bytes) does not end with the EOI marker: it was cut short before it was stored, so the image data is damaged`,
  );
}

/** The Start Of Frame marker and its sample precision, walking the marker segments before the first scan. */
function jpegFrameHeader(stream: Uint8Array): { marker: number; precision: number } | undefined {
  let i = 2; // after SOI
  while (i + 4 < stream.length && stream[i] === 0xff) {
    const marker = stream[i + 1] ?? 0;
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return { marker, precision: stream[i + 4] ?? 0 };
    if (marker === 0xda) return undefined;
    i += 2 + (((stream[i + 2] ?? 0) << 8) | (stream[i + 3] ?? 0));
  }
  return undefined;
}

/**
 * Sample precision from the first Start Of Frame segment, walking the marker segments that precede it; undefined
 * when the stream has no recognisable frame header (the decoder then reports what is wrong).
 */
export function jpegSamplePrecision(stream: Uint8Array): number | undefined {
  return jpegFrameHeader(stream)?.precision;
}

/** Coding processes libjpeg-turbo certainly decodes: when it fails on one of these, the stream is damaged. */
const LIBJPEG_TURBO_PROCESSES = new Set([0xc0, 0xc1, 0xc2]);

/**
 * JPEG Baseline (8-bit, .50) through libjpeg-turbo compiled to WebAssembly. Extended (.51) files with 8-bit
 * samples decode the same way; 12-bit frames (Process 4, under either syntax) go to the TypeScript sequential
 * DCT decoder in jpeg-extended.ts, which reproduces libjpeg-turbo's arithmetic at 12 bits.
 */
export const jpegBaselineCodec: PixelCodec = {
  name: 'libjpeg-turbo-8bit',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    const { header: h, file } = input;
    const encoded = throughEndOfImage(input, encapsulatedFrame(input, frameIndex, 'JPEG'), frameIndex, 'JPEG');
    const frameHeader = jpegFrameHeader(encoded);
    // Checked on the stream, not the header: vendors store 8-bit JPEG in 16-bit Bits Allocated and vice versa.
    // Beyond 8 bits this libjpeg-turbo build cannot go; the TypeScript decoder takes 12-bit (Process 4) frames.
    if (frameHeader !== undefined && frameHeader.precision > 8) return decodeJpegExtendedFrame(input, encoded, frameIndex);
    return libjpeg.use((module) => {
      const decoder = new module.JPEGDecoder();
      try {
        decoder.getEncodedBuffer(encoded.length).set(encoded);
        try {
          decoder.decode();
        } catch (error) {
          const process = frameHeader === undefined || LIBJPEG_TURBO_PROCESSES.has(frameHeader.marker) ? undefined : UNSUPPORTED_FRAMES.get(frameHeader.marker);
          if (process !== undefined) {
            throw new DicomRejection(file, 'unsupported-pixel-format', `JPEG ${frameLabel(frameIndex, h.numberOfFrames)} uses ${process}, which libjpeg-turbo could not decode`, { cause: error });
          }
          throw damagedStream(file, 'JPEG', frameIndex, h.numberOfFrames, 'libjpeg-turbo', error);
        }
        const info = decoder.getFrameInfo();
        checkGeometry(file, h, info, frameIndex, 'JPEG');
        const samples = h.rows * h.columns * info.componentCount;
        const decoded = decoder.getDecodedBuffer();
        if (decoded.length < samples) {
          throw new DicomRejection(file, 'corrupt', `the JPEG stream of ${frameLabel(frameIndex, h.numberOfFrames)} decodes to ${decoded.length} bytes, too few for ${samples} samples; the image data is damaged`);
        }
        return { bytes: widenSamples(decoded, 8, h, samples), planar: false };
      } finally {
        decoder.delete();
      }
    });
  },
};

/** The members of jpeg-lossless-decoder-js's Decoder used here (the package ships no type declarations). */
interface LosslessDecoder {
  decode(buffer: ArrayBuffer, offset: number, length: number, numBytes?: number): Uint8Array | Uint16Array;
  readonly xDim: number;
  readonly yDim: number;
  readonly numComp: number;
  readonly precision: number | undefined;
}
interface LosslessPackage {
  Decoder: new () => LosslessDecoder;
}

let losslessPackage: LosslessPackage | undefined;
function losslessDecoder(): LosslessDecoder {
  // Loaded on first use through require: the package's published "types" entry points at a missing file.
  losslessPackage ??= createRequire(import.meta.url)('jpeg-lossless-decoder-js') as LosslessPackage;
  return new losslessPackage.Decoder();
}

/** JPEG Lossless, Process 14 (.57, any predictor, and .70, first-order prediction) in pure JavaScript. */
export const jpegLosslessCodec: PixelCodec = {
  name: 'jpeg-lossless-decoder-js',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    const { header: h, file } = input;
    const encoded = throughEndOfImage(input, encapsulatedFrame(input, frameIndex, 'JPEG Lossless'), frameIndex, 'JPEG Lossless');
    const decoder = losslessDecoder();
    // The decoder takes an ArrayBuffer, and the frame may be a view into the whole file (a Node Buffer, whose
    // slice() would still share it), so hand it a private copy that starts at offset 0.
    const copy = new Uint8Array(encoded);
    let decoded: Uint8Array | Uint16Array;
    try {
      decoded = decoder.decode(copy.buffer, 0, copy.length, h.bitsAllocated / 8 > 2 ? 2 : h.bitsAllocated / 8);
    } catch (error) {
      // The one valid stream this decoder refuses is arithmetic coded; anything else it cannot read is damaged.
      if (error instanceof Error && /arithmetic/i.test(error.message)) {
        throw new DicomRejection(file, 'unsupported-pixel-format', `JPEG Lossless ${frameLabel(frameIndex, h.numberOfFrames)} uses arithmetic coding, which is not supported`, { cause: error });
      }
      throw damagedStream(file, 'JPEG Lossless', frameIndex, h.numberOfFrames, 'the JPEG Lossless decoder', error);
    }
    const precision = decoder.precision ?? h.bitsStored;
    checkGeometry(file, h, { width: decoder.xDim, height: decoder.yDim, componentCount: decoder.numComp, bitsPerSample: precision }, frameIndex, 'JPEG Lossless');
    if (decoder.numComp === 3 && h.bitsAllocated !== 8) {
      throw new DicomRejection(file, 'unsupported-pixel-format', 'JPEG Lossless colour images are only supported with 8-bit samples');
    }
    const samples = h.rows * h.columns * decoder.numComp;
    if (decoded.length < samples) {
      throw new DicomRejection(file, 'corrupt', `the JPEG Lossless stream of ${frameLabel(frameIndex, h.numberOfFrames)} decodes to ${decoded.length} samples, expected ${samples}; the image data is damaged`);
    }
    const bytes = new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.byteLength);
    return { bytes: widenSamples(bytes, decoded.BYTES_PER_ELEMENT === 1 ? 8 : 16, h, samples), planar: false };
  },
};
