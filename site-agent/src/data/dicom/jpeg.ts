import { createRequire } from 'node:module';
import type { CodecFrame, CodecInput, PixelCodec } from './codecs.js';
import { checkGeometry, encapsulatedFrame, endsWithEoc, widenSamples } from './encapsulated.js';
import { decodeJpegExtendedFrame } from './jpeg-extended.js';
import { DicomRejection } from './rejection.js';
import { describeWasmError, lazyModule, type EmbindObject, type WasmFrameInfo } from './wasm.js';

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

function requireEndMarker(input: CodecInput, encoded: Uint8Array, frameIndex: number, label: string): void {
  if (!endsWithEoc(encoded)) {
    throw new DicomRejection(input.file, 'truncated', `${label} frame ${frameIndex} (${encoded.length} bytes) does not end with the EOI marker; the frame is cut short`);
  }
}

/**
 * Sample precision from the first Start Of Frame segment, walking the marker segments that precede it; undefined
 * when the stream has no recognisable frame header (the decoder then reports what is wrong).
 */
export function jpegSamplePrecision(stream: Uint8Array): number | undefined {
  let i = 2; // after SOI
  while (i + 4 < stream.length && stream[i] === 0xff) {
    const marker = stream[i + 1] ?? 0;
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return stream[i + 4];
    if (marker === 0xda) return undefined;
    i += 2 + (((stream[i + 2] ?? 0) << 8) | (stream[i + 3] ?? 0));
  }
  return undefined;
}

/**
 * JPEG Baseline (8-bit, .50) through libjpeg-turbo compiled to WebAssembly. Extended (.51) files with 8-bit
 * samples decode the same way; 12-bit frames (Process 4, under either syntax) go to the TypeScript sequential
 * DCT decoder in jpeg-extended.ts, which reproduces libjpeg-turbo's arithmetic at 12 bits.
 */
export const jpegBaselineCodec: PixelCodec = {
  name: 'libjpeg-turbo-8bit',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    const { header: h, file } = input;
    const encoded = encapsulatedFrame(input, frameIndex, 'JPEG');
    const precision = jpegSamplePrecision(encoded);
    requireEndMarker(input, encoded, frameIndex, 'JPEG');
    // Checked on the stream, not the header: vendors store 8-bit JPEG in 16-bit Bits Allocated and vice versa.
    // Beyond 8 bits this libjpeg-turbo build cannot go; the TypeScript decoder takes 12-bit (Process 4) frames.
    if (precision !== undefined && precision > 8) return decodeJpegExtendedFrame(input, encoded, frameIndex);
    return libjpeg.use((module) => {
      const decoder = new module.JPEGDecoder();
      try {
        decoder.getEncodedBuffer(encoded.length).set(encoded);
        try {
          decoder.decode();
        } catch (error) {
          throw new DicomRejection(file, 'unsupported-pixel-format', `JPEG frame ${frameIndex} is corrupt or not decodable by libjpeg-turbo (8-bit only) (${describeWasmError(error)})`, { cause: error });
        }
        const info = decoder.getFrameInfo();
        checkGeometry(file, h, info, frameIndex, 'JPEG');
        const samples = h.rows * h.columns * info.componentCount;
        const decoded = decoder.getDecodedBuffer();
        if (decoded.length < samples) {
          throw new DicomRejection(file, 'truncated', `JPEG frame ${frameIndex} decoded to ${decoded.length} bytes, too few for ${samples} samples`);
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
    const encoded = encapsulatedFrame(input, frameIndex, 'JPEG Lossless');
    requireEndMarker(input, encoded, frameIndex, 'JPEG Lossless');
    const decoder = losslessDecoder();
    // The decoder takes an ArrayBuffer, and the frame may be a view into the whole file (a Node Buffer, whose
    // slice() would still share it), so hand it a private copy that starts at offset 0.
    const copy = new Uint8Array(encoded);
    let decoded: Uint8Array | Uint16Array;
    try {
      decoded = decoder.decode(copy.buffer, 0, copy.length, h.bitsAllocated / 8 > 2 ? 2 : h.bitsAllocated / 8);
    } catch (error) {
      throw new DicomRejection(file, 'unsupported-pixel-format', `JPEG Lossless frame ${frameIndex} is corrupt or not decodable (${describeWasmError(error)})`, { cause: error });
    }
    const precision = decoder.precision ?? h.bitsStored;
    checkGeometry(file, h, { width: decoder.xDim, height: decoder.yDim, componentCount: decoder.numComp, bitsPerSample: precision }, frameIndex, 'JPEG Lossless');
    if (decoder.numComp === 3 && h.bitsAllocated !== 8) {
      throw new DicomRejection(file, 'unsupported-pixel-format', 'JPEG Lossless colour images are only supported with 8-bit samples');
    }
    const samples = h.rows * h.columns * decoder.numComp;
    if (decoded.length < samples) {
      throw new DicomRejection(file, 'truncated', `JPEG Lossless frame ${frameIndex} decoded to ${decoded.length} samples, expected ${samples}`);
    }
    const bytes = new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.byteLength);
    return { bytes: widenSamples(bytes, decoded.BYTES_PER_ELEMENT === 1 ? 8 : 16, h, samples), planar: false };
  },
};
