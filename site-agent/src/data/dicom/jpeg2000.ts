import type { CodecFrame, CodecInput, PixelCodec } from './codecs.js';
import { checkGeometry, encapsulatedFrame, endsWithEoc, widenSamples } from './encapsulated.js';
import { damagedStream, DicomRejection, frameLabel } from './rejection.js';
import { lazyModule, type EmbindObject, type WasmFrameInfo } from './wasm.js';

/** The decoder classes of codec-openjpeg and codec-openjph share this shape. */
interface J2KLikeDecoder extends EmbindObject {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): WasmFrameInfo;
}

interface OpenJpegModule {
  readonly J2KDecoder: new () => J2KLikeDecoder;
}
interface OpenJphModule {
  readonly HTJ2KDecoder: new () => J2KLikeDecoder;
}

const openjpeg = lazyModule<OpenJpegModule>('@cornerstonejs/codec-openjpeg/decodewasmjs', '@cornerstonejs/codec-openjpeg/decodewasm', 'J2KDecoder');
const openjph = lazyModule<OpenJphModule>('@cornerstonejs/codec-openjph/wasmjs', '@cornerstonejs/codec-openjph/wasm', 'HTJ2KDecoder');

function decodeWith(decoder: J2KLikeDecoder, input: CodecInput, frameIndex: number, label: string, decoderName: string): CodecFrame {
  const { header: h, file } = input;
  const encoded = encapsulatedFrame(input, frameIndex, label);
  if (!endsWithEoc(encoded)) {
    // The fragments are complete by now, so the codestream was cut short before it was stored.
    throw new DicomRejection(
      file,
      'corrupt',
      `the ${label} stream of ${frameLabel(frameIndex, h.numberOfFrames)} (${encoded.length} bytes) does not end with the EOC marker: it was cut short before it was stored, so the image data is damaged`,
    );
  }
  try {
    decoder.getEncodedBuffer(encoded.length).set(encoded);
    try {
      decoder.decode();
    } catch (error) {
      throw damagedStream(file, label, frameIndex, h.numberOfFrames, decoderName, error);
    }
    const info = decoder.getFrameInfo();
    // OpenJPEG reports most damage by decoding nothing rather than by throwing.
    if (info.width === 0 || info.height === 0 || info.componentCount === 0) throw damagedStream(file, label, frameIndex, h.numberOfFrames, decoderName);
    checkGeometry(file, h, info, frameIndex, label);
    const samples = h.rows * h.columns * info.componentCount;
    const decoded = decoder.getDecodedBuffer();
    if (decoded.length < samples * (info.bitsPerSample <= 8 ? 1 : 2)) {
      throw new DicomRejection(file, 'corrupt', `the ${label} stream of ${frameLabel(frameIndex, h.numberOfFrames)} decodes to ${decoded.length} bytes, too few for ${samples} samples; the image data is damaged`);
    }
    // Both decoders return components interleaved per pixel, with any multi-component transform already undone.
    return { bytes: widenSamples(decoded, info.bitsPerSample, h, samples), planar: false };
  } finally {
    decoder.delete();
  }
}

/** JPEG 2000 Part 1, lossless and lossy (.90/.91), through OpenJPEG compiled to WebAssembly. */
export const jpeg2000Codec: PixelCodec = {
  name: 'openjpeg',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    return openjpeg.use((module) => decodeWith(new module.J2KDecoder(), input, frameIndex, 'JPEG 2000', 'OpenJPEG'));
  },
};

/** High-Throughput JPEG 2000 (.201/.202/.203), through OpenJPH compiled to WebAssembly. */
export const htj2kCodec: PixelCodec = {
  name: 'openjph',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    return openjph.use((module) => decodeWith(new module.HTJ2KDecoder(), input, frameIndex, 'HTJ2K', 'OpenJPH'));
  },
};
