import type { CodecInput } from './codecs.js';
import type { DicomHeader } from './header.js';
import { DicomRejection } from './rejection.js';
import type { WasmFrameInfo } from './wasm.js';

/** The compressed bitstream of one frame; compressed syntaxes are only defined for encapsulated Pixel Data. */
export function encapsulatedFrame(input: CodecInput, frameIndex: number, codecName: string): Uint8Array {
  if (input.pixelData.kind !== 'encapsulated') {
    throw new DicomRejection(input.file, 'unsupported-pixel-format', `${codecName} requires encapsulated (undefined-length) Pixel Data`);
  }
  return input.pixelData.frame(frameIndex);
}

/**
 * Refuses a decoded image whose geometry disagrees with the DICOM header: reading it with the header's shape
 * would scramble the pixels, which is worse than not using the file.
 */
export function checkGeometry(file: string, h: DicomHeader, info: WasmFrameInfo, frameIndex: number, codecName: string): void {
  const samples = h.photometricInterpretation === 'YBR_FULL_422' ? 3 : h.samplesPerPixel;
  if (info.width !== h.columns || info.height !== h.rows || info.componentCount !== samples) {
    // The header and the stream describe different images (a stream that decodes to 0 x 0 is plainly damaged).
    throw new DicomRejection(
      file,
      'corrupt',
      `${codecName} frame ${frameIndex} is ${info.width} x ${info.height} x ${info.componentCount} but the header declares ${h.columns} x ${h.rows} x ${samples}`,
    );
  }
  if (info.bitsPerSample > h.bitsAllocated) {
    throw new DicomRejection(
      file,
      'unsupported-pixel-format',
      `${codecName} frame ${frameIndex} has ${info.bitsPerSample}-bit samples, more than Bits Allocated ${h.bitsAllocated}`,
    );
  }
}

/**
 * Copies decoded samples (1 byte each up to 8 bits, else 2, little endian as wasm memory is) into a fresh buffer
 * at the header's Bits Allocated width. The copy also detaches the result from wasm memory, which the next
 * decode reuses.
 */
export function widenSamples(decoded: Uint8Array, bitsPerSample: number, h: DicomHeader, sampleCount: number): Uint8Array {
  const inBytes = bitsPerSample <= 8 ? 1 : 2;
  const outBytes = h.bitsAllocated / 8;
  if (inBytes === outBytes) return decoded.slice(0, sampleCount * outBytes);
  const out = new Uint8Array(sampleCount * outBytes);
  for (let i = 0; i < sampleCount; i++) {
    out[i * outBytes] = decoded[i * inBytes] ?? 0;
    if (inBytes === 2) out[i * outBytes + 1] = decoded[i * inBytes + 1] ?? 0;
  }
  return out;
}

/** EOC (JPEG 2000) and EOI (JPEG, JPEG-LS) share the code 0xFFD9. */
const EOC = [0xff, 0xd9] as const;

/**
 * True when the codestream ends with the End Of Codestream marker, allowing the few padding bytes encoders
 * add for even fragment lengths. The JPEG and JPEG 2000 decoders happily return a partial image for a codestream cut short,
 * so without this check a truncated frame would be misread as blurry or blank pixels instead of refused.
 */
export function endsWithEoc(stream: Uint8Array): boolean {
  let end = stream.length;
  // Encoders pad the last fragment to even length with 0x00, some (e.g. MR2_J2KI) with 0xFF.
  while (end > 0 && (stream[end - 1] === 0x00 || stream[end - 1] === 0xff) && stream.length - end < 8) end--;
  return end >= 2 && stream[end - 2] === EOC[0] && stream[end - 1] === EOC[1];
}
