import type { DicomHeader } from './header.js';
import { nativeFrameByteLength, swapToLittleEndian, unpackBits, upsampleYbr422 } from './pixels.js';
import { DicomRejection } from './rejection.js';
import { jpegBaselineCodec, jpegLosslessCodec } from './jpeg.js';
import { htj2kCodec, jpeg2000Codec } from './jpeg2000.js';
import { jpegLsCodec } from './jpegls.js';
import { rleCodec } from './rle.js';
import {
  DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
  EXPLICIT_VR_BIG_ENDIAN,
  EXPLICIT_VR_LITTLE_ENDIAN,
  HTJ2K,
  HTJ2K_LOSSLESS,
  HTJ2K_LOSSLESS_RPCL,
  IMPLICIT_VR_LITTLE_ENDIAN,
  JPEG_2000,
  JPEG_2000_LOSSLESS,
  JPEG_BASELINE,
  JPEG_EXTENDED,
  JPEG_LOSSLESS,
  JPEG_LOSSLESS_SV1,
  JPEG_LS_LOSSLESS,
  JPEG_LS_NEAR_LOSSLESS,
  RLE_LOSSLESS,
} from './transfer-syntax.js';

/** Pixel Data as found in the file, before any codec runs. */
export type EncodedPixelData =
  | {
      readonly kind: 'native';
      /** The value bytes of (7FE0,0010), in the dataset's byte order. */
      readonly bytes: Uint8Array;
      /** VR of the element when the dataset is explicit VR (OB or OW), else undefined. */
      readonly vr: string | undefined;
      /**
       * True when the file ends inside the value the element declares. Pixel Data shorter than the image needs is
       * then a truncated file; otherwise the file is complete and the header and the Pixel Data disagree.
       */
      readonly cutShort?: boolean;
    }
  | {
      readonly kind: 'encapsulated';
      readonly fragmentCount: number;
      /** The compressed bitstream of one frame (fragments concatenated as the offset tables dictate). */
      frame(index: number): Uint8Array;
    };

export interface CodecInput {
  readonly file: string;
  readonly header: DicomHeader;
  readonly littleEndian: boolean;
  readonly pixelData: EncodedPixelData;
}

/**
 * A codec's output: samples of header.bitsAllocated bits in little-endian byte order, either interleaved per
 * pixel or planar. The reader then masks to Bits Stored, sign-extends and interleaves, so codecs stay small.
 */
export interface CodecFrame {
  /** For Bits Allocated 1, one byte (0 or 1) per pixel, already unpacked from the bit stream. */
  readonly bytes: Uint8Array;
  readonly planar: boolean;
}

/**
 * One decoder per transfer syntax. Compressed syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE) plug in by adding an
 * entry to the codec map passed to the reader; a syntax without an entry is rejected with its name.
 */
export interface PixelCodec {
  readonly name: string;
  /** Throws DicomRejection when the frame cannot be decoded (e.g. the data is shorter than declared). */
  decodeFrame(input: CodecInput, frameIndex: number): CodecFrame;
}

export type CodecRegistry = ReadonlyMap<string, PixelCodec>;

/**
 * Native Pixel Data holds fewer bytes than the frames need: the file was cut inside it, or (file complete) the
 * Pixel Data length and the image size in the header disagree.
 */
function shortPixelData(input: CodecInput, held: number, needed: number, what: string, cutShort: boolean | undefined): DicomRejection {
  const h = input.header;
  const shape = `${h.numberOfFrames} frame(s) of ${h.rows} x ${h.columns}${what}`;
  if (cutShort === true) return new DicomRejection(input.file, 'truncated', `file ends inside the Pixel Data: it holds ${held} bytes but ${shape} need ${needed}`);
  return new DicomRejection(input.file, 'corrupt', `Pixel Data holds ${held} bytes but the header describes ${shape}, which need ${needed}; the header and the pixel data do not match`);
}

/** One frame of native bit-packed (Bits Allocated 1) data, expanded to one byte per pixel. */
function nativeBitPackedFrame(input: CodecInput, data: Uint8Array, vr: string | undefined, frameIndex: number, cutShort: boolean | undefined): Uint8Array {
  const h = input.header;
  const pixels = h.rows * h.columns;
  const needed = Math.ceil((pixels * h.numberOfFrames) / 8);
  if (data.length < needed) throw shortPixelData(input, data.length, needed, ' at 1 bit', cutShort);
  // Big-endian OW is a stream of 16-bit words, so the bit stream's bytes arrive pairwise swapped.
  const ordered = !input.littleEndian && vr === 'OW' ? swapToLittleEndian(data, 2) : data;
  return unpackBits(ordered, frameIndex * pixels, pixels);
}

/** Uncompressed pixel data in any of the native transfer syntaxes (deflate is undone by the parser already). */
export const nativeCodec: PixelCodec = {
  name: 'native',
  decodeFrame(input, frameIndex) {
    const { header: h, pixelData, file } = input;
    if (pixelData.kind !== 'native') {
      throw new DicomRejection(
        file,
        'unsupported-pixel-format',
        `encapsulated (undefined-length) Pixel Data under native transfer syntax ${h.transferSyntaxUid} (${h.transferSyntaxName})`,
      );
    }
    if (h.bitsAllocated === 1) return { bytes: nativeBitPackedFrame(input, pixelData.bytes, pixelData.vr, frameIndex, pixelData.cutShort), planar: false };
    const frameBytes = nativeFrameByteLength(h);
    const needed = frameBytes * h.numberOfFrames;
    // Checked for all frames at once so a short multi-frame file is refused up front, not halfway through.
    if (pixelData.bytes.length < needed) {
      throw shortPixelData(input, pixelData.bytes.length, needed, ` x ${h.samplesPerPixel} at ${h.bitsAllocated} bits`, pixelData.cutShort);
    }
    const raw = pixelData.bytes.subarray(frameIndex * frameBytes, (frameIndex + 1) * frameBytes);
    let bytes = raw;
    if (!input.littleEndian) {
      if (h.bitsAllocated > 8) bytes = swapToLittleEndian(raw, h.bitsAllocated === 16 ? 2 : 4);
      // In big endian, OW is a stream of 16-bit words, so 8-bit samples held in OW arrive pairwise swapped.
      else if (pixelData.vr === 'OW') bytes = swapToLittleEndian(raw, 2);
    }
    if (h.photometricInterpretation === 'YBR_FULL_422') return { bytes: upsampleYbr422(bytes, h), planar: false };
    return { bytes, planar: h.planarConfiguration === 1 };
  },
};

/** The codecs available by default, by transfer syntax; any syntax missing here is rejected by name. */
export const defaultCodecs: CodecRegistry = new Map<string, PixelCodec>([
  [IMPLICIT_VR_LITTLE_ENDIAN, nativeCodec],
  [EXPLICIT_VR_LITTLE_ENDIAN, nativeCodec],
  [DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, nativeCodec],
  [EXPLICIT_VR_BIG_ENDIAN, nativeCodec],
  [RLE_LOSSLESS, rleCodec],
  [JPEG_LS_LOSSLESS, jpegLsCodec],
  [JPEG_LS_NEAR_LOSSLESS, jpegLsCodec],
  [JPEG_2000_LOSSLESS, jpeg2000Codec],
  [JPEG_2000, jpeg2000Codec],
  [HTJ2K_LOSSLESS, htj2kCodec],
  [HTJ2K_LOSSLESS_RPCL, htj2kCodec],
  [HTJ2K, htj2kCodec],
  // 8-bit frames go through libjpeg-turbo, 12-bit ones (Process 4) through jpeg-extended.ts: the stream decides.
  [JPEG_BASELINE, jpegBaselineCodec],
  [JPEG_EXTENDED, jpegBaselineCodec],
  [JPEG_LOSSLESS, jpegLosslessCodec],
  [JPEG_LOSSLESS_SV1, jpegLosslessCodec],
]);
