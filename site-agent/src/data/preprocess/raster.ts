import sharp, { type Sharp } from 'sharp';
import { ImageRejection } from './rejection.js';

/** A PNG or JPEG decoded to interleaved samples at its own depth: display values, not modality values. */
export interface RasterImage {
  readonly file: string;
  readonly format: 'png' | 'jpeg';
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly bitDepth: 8 | 16;
  readonly pixels: Uint8Array | Uint16Array;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] as const;
const DICM_OFFSET = 128;

/**
 * PNG or JPEG by signature, or undefined for anything else (the DICOM reader then decides). A Part 10 file's
 * 128-byte preamble is free-form, so "DICM" after it wins over whatever the preamble starts with.
 */
export function sniffRasterFormat(bytes: Uint8Array): 'png' | 'jpeg' | undefined {
  const dicm = bytes.length >= DICM_OFFSET + 4 && String.fromCharCode(...bytes.subarray(DICM_OFFSET, DICM_OFFSET + 4)) === 'DICM';
  if (dicm) return undefined;
  if (bytes.length >= PNG_SIGNATURE.length && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return undefined;
}

const PNG_IEND = [0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82] as const;

/**
 * Whether the file stops before its format's end marker: a PNG's last chunk is IEND, a JPEG's last marker EOI
 * (some writers pad after it, hence the search of the tail). libpng says only "read error" for a cut file,
 * which it also says for a corrupt one, so the bytes decide.
 */
function endsEarly(bytes: Uint8Array, format: 'png' | 'jpeg'): boolean {
  if (format === 'png') return !PNG_IEND.every((b, i) => bytes[bytes.length - PNG_IEND.length + i] === b);
  for (let i = bytes.length - 2; i >= Math.max(2, bytes.length - 256); i--) if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return false;
  return true;
}

/**
 * Decodes a PNG or JPEG with sharp: EXIF orientation applied (a photographed image is used the way it is
 * viewed), alpha composited onto black (the colour under a transparent pixel is arbitrary), grey kept as one
 * band and colour as sRGB, 16-bit PNGs at 16 bits. Any sharp warning fails the decode, so a damaged file is
 * rejected rather than trained on half-decoded.
 */
export async function decodeRaster(bytes: Uint8Array, file: string): Promise<RasterImage> {
  const format = sniffRasterFormat(bytes);
  if (format === undefined) throw new ImageRejection(file, 'not-dicom', 'neither DICOM nor PNG/JPEG');
  try {
    const source = (): Sharp => sharp(bytes, { failOn: 'warning', autoOrient: true });
    const meta = await source().metadata();
    if (meta.format !== (format === 'png' ? 'png' : 'jpeg')) {
      throw new ImageRejection(file, 'unreadable-image', `signature says ${format} but the decoder found ${meta.format}`);
    }
    const colourBands = (meta.channels ?? 0) - (meta.hasAlpha ? 1 : 0);
    const colour = colourBands >= 3;
    const deep = meta.depth === 'ushort';
    const { data, info } = await source()
      .flatten({ background: { r: 0, g: 0, b: 0 } })
      .toColourspace(colour ? (deep ? 'rgb16' : 'srgb') : deep ? 'grey16' : 'b-w')
      .raw({ depth: deep ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const channels = colour ? 3 : 1;
    const count = info.width * info.height * channels;
    if (info.channels !== channels || data.length !== count * (deep ? 2 : 1)) {
      throw new ImageRejection(file, 'unreadable-image', `decoded to ${info.width}x${info.height}x${info.channels} (${data.length} bytes), expected ${channels} band(s) at ${deep ? 16 : 8} bits`);
    }
    let pixels: Uint8Array | Uint16Array;
    if (deep) {
      // Copy out of the Buffer (its offset into Node's pool need not be 2-byte aligned); samples are host order.
      const samples = new Uint16Array(count);
      new Uint8Array(samples.buffer).set(data.subarray(0, samples.byteLength));
      pixels = samples;
    } else {
      pixels = new Uint8Array(data.subarray(0, count));
    }
    return { file, format, width: info.width, height: info.height, channels, bitDepth: deep ? 16 : 8, pixels };
  } catch (error) {
    if (error instanceof ImageRejection) throw error;
    // libvips repeats itself over several lines; the first says what went wrong.
    const message = (error instanceof Error ? error.message : String(error)).trim().split('\n')[0] ?? '';
    const reason = endsEarly(bytes, format) || /premature end/i.test(message) ? 'truncated' : 'unreadable-image';
    throw new ImageRejection(file, reason, `${format.toUpperCase()} cannot be decoded (${message})`, { cause: error });
  }
}
