import type { CodecFrame, CodecInput, PixelCodec } from './codecs.js';
import { checkGeometry, encapsulatedFrame, widenSamples } from './encapsulated.js';
import { damagedStream, DicomRejection, frameLabel } from './rejection.js';
import { lazyModule, type EmbindObject, type WasmFrameInfo } from './wasm.js';

interface JpegLSDecoder extends EmbindObject {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getDecodedBuffer(): Uint8Array;
  getFrameInfo(): WasmFrameInfo;
  /** 0 = none (planar), 1 = line, 2 = sample interleaved. */
  getInterleaveMode(): number;
}

interface CharLSModule {
  readonly JpegLSDecoder: new () => JpegLSDecoder;
}

const charls = lazyModule<CharLSModule>('@cornerstonejs/codec-charls/decodewasmjs', '@cornerstonejs/codec-charls/decodewasm', 'JpegLSDecoder');

/** JPEG-LS lossless and near-lossless (ISO 14495-1) through CharLS compiled to WebAssembly. */
export const jpegLsCodec: PixelCodec = {
  name: 'charls',
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame {
    const { header: h, file } = input;
    const encoded = encapsulatedFrame(input, frameIndex, 'JPEG-LS');
    return charls.use((module) => {
      const decoder = new module.JpegLSDecoder();
      try {
        decoder.getEncodedBuffer(encoded.length).set(encoded);
        try {
          decoder.decode();
        } catch (error) {
          throw damagedStream(file, 'JPEG-LS', frameIndex, h.numberOfFrames, 'CharLS', error);
        }
        const info = decoder.getFrameInfo();
        checkGeometry(file, h, info, frameIndex, 'JPEG-LS');
        const samples = h.rows * h.columns * info.componentCount;
        const decoded = decoder.getDecodedBuffer();
        if (decoded.length < samples * (info.bitsPerSample <= 8 ? 1 : 2)) {
          throw new DicomRejection(file, 'corrupt', `the JPEG-LS stream of ${frameLabel(frameIndex, h.numberOfFrames)} decodes to ${decoded.length} bytes, too few for ${samples} samples; the image data is damaged`);
        }
        // Interleave mode "none" stores one component after another; line and sample modes come out per pixel.
        return { bytes: widenSamples(decoded, info.bitsPerSample, h, samples), planar: info.componentCount > 1 && decoder.getInterleaveMode() === 0 };
      } finally {
        decoder.delete();
      }
    });
  },
};
