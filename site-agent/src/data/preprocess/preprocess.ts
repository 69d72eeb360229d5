import sharp from 'sharp';
import type { DicomHeader } from '../dicom/header.js';
import type { PixelArray } from '../dicom/pixels.js';
import { DicomRejection } from '../dicom/rejection.js';

/** What preprocessing needs from a decoded image: its header and one frame of stored values. */
export interface FrameSource {
  readonly file: string;
  readonly header: DicomHeader;
  readonly pixels: PixelArray;
}

export interface PreprocessOptions {
  /** Side of the square model input in pixels. */
  readonly inputSize: number;
}

const UINT16_MAX = 65535;

/** ITU-R BT.601 luma weights, the usual choice when a colour secondary capture has to feed a grey model. */
const LUMA = [0.299, 0.587, 0.114] as const;

/**
 * Maps stored palette indices through the Red/Green/Blue Palette Color LUTs (PS3.3 C.7.6.3.1.5) to interleaved
 * RGB in the table's range. Indices outside the table clamp to its first / last entry, as the standard says.
 */
export function applyPaletteLut(source: FrameSource): Uint16Array {
  const { header: h, pixels } = source;
  const lut = h.paletteLut;
  if (h.photometricInterpretation !== 'PALETTE COLOR' || lut === undefined) {
    throw new DicomRejection(source.file, 'unsupported-pixel-format', 'PALETTE COLOR image without usable Red/Green/Blue Palette Color Lookup Tables (0028,1101-1203)');
  }
  const count = h.rows * h.columns;
  const last = lut.red.length - 1;
  const out = new Uint16Array(count * 3);
  for (let i = 0; i < count; i++) {
    const index = Math.min(last, Math.max(0, (pixels[i] ?? 0) - lut.firstMapped));
    out[i * 3] = lut.red[index] ?? 0;
    out[i * 3 + 1] = lut.green[index] ?? 0;
    out[i * 3 + 2] = lut.blue[index] ?? 0;
  }
  return out;
}

/**
 * One grey value per pixel in modality units: the Modality LUT (slope/intercept) for monochrome data, luma for
 * RGB and for palette colour after its LUT, and Y for YBR (already luma).
 */
export function modalityValues(source: FrameSource): Float64Array {
  const { header: h, pixels } = source;
  const count = h.rows * h.columns;
  const out = new Float64Array(count);
  const photometric = h.photometricInterpretation;
  if (photometric === 'MONOCHROME1' || photometric === 'MONOCHROME2') {
    for (let i = 0; i < count; i++) out[i] = (pixels[i] ?? 0) * h.rescaleSlope + h.rescaleIntercept;
    return out;
  }
  if (photometric === 'RGB' && h.samplesPerPixel === 3) {
    for (let i = 0; i < count; i++) {
      out[i] = LUMA[0] * (pixels[i * 3] ?? 0) + LUMA[1] * (pixels[i * 3 + 1] ?? 0) + LUMA[2] * (pixels[i * 3 + 2] ?? 0);
    }
    return out;
  }
  if (photometric === 'PALETTE COLOR' && h.samplesPerPixel === 1) {
    const rgb = applyPaletteLut(source);
    for (let i = 0; i < count; i++) out[i] = LUMA[0] * (rgb[i * 3] ?? 0) + LUMA[1] * (rgb[i * 3 + 1] ?? 0) + LUMA[2] * (rgb[i * 3 + 2] ?? 0);
    return out;
  }
  if ((photometric === 'YBR_FULL' || photometric === 'YBR_FULL_422') && h.samplesPerPixel === 3) {
    for (let i = 0; i < count; i++) out[i] = pixels[i * 3] ?? 0;
    return out;
  }
  throw new DicomRejection(source.file, 'unsupported-pixel-format', `Photometric Interpretation ${photometric} cannot be converted to grey for the model`);
}

/**
 * Maps modality values to [0, 1]. With a VOI window we clamp to it using the DICOM linear window function
 * (PS3.3 C.11.2.1.2.1) so the model sees what radiologists see; otherwise min-max over the frame. Colour data
 * uses its full sample range instead, because min-max would stretch the contrast of flat-coloured captures.
 * MONOCHROME1 (high value = dark) is inverted so every site's images share one polarity.
 */
export function normaliseToUnit(values: Float64Array, header: DicomHeader): Float32Array {
  const out = new Float32Array(values.length);
  const colour = header.samplesPerPixel === 3;
  const palette = header.photometricInterpretation === 'PALETTE COLOR' ? header.paletteLut : undefined;
  if (colour || palette !== undefined) {
    // Palette luma lives in the table's range, not the index range, and like RGB should not be contrast-stretched.
    const max = 2 ** (palette?.bitsPerEntry ?? header.bitsStored) - 1;
    for (let i = 0; i < values.length; i++) out[i] = Math.min(1, Math.max(0, (values[i] ?? 0) / max));
  } else if (header.windowCenter !== undefined && header.windowWidth !== undefined) {
    const c = header.windowCenter - 0.5;
    const w = header.windowWidth - 1;
    for (let i = 0; i < values.length; i++) {
      const x = values[i] ?? 0;
      // Width 1 degenerates to a threshold at the centre.
      const y = w <= 0 ? (x > c ? 1 : 0) : (x - c) / w + 0.5;
      out[i] = Math.min(1, Math.max(0, y));
    }
  } else {
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const span = max - min;
    // A constant frame carries no contrast; zeros keep it finite instead of dividing by zero.
    for (let i = 0; i < values.length; i++) out[i] = span > 0 ? ((values[i] ?? 0) - min) / span : 0;
  }
  if (header.photometricInterpretation === 'MONOCHROME1') {
    for (let i = 0; i < out.length; i++) out[i] = 1 - (out[i] ?? 0);
  }
  return out;
}

/**
 * Resizes a [0, 1] grey image to size x size, letterboxed (aspect ratio kept, black borders). Sharp (0.35) has
 * no usable float route: single-band Float32Array input comes back as 3-band sRGB with fractional values lost
 * (0.5 became 0 in our probes), and 16-bit input silently becomes 8-bit RGB unless told otherwise. So we
 * quantise to 16 bits (1/65535 steps, finer than any 12-16 bit scanner after windowing), resize in the 'grey16'
 * colourspace and read back one ushort band.
 */
export async function resizeUnitImage(data: Float32Array, width: number, height: number, size: number): Promise<Float32Array> {
  if (width === size && height === size) return data;
  const quantised = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) quantised[i] = Math.round(Math.min(1, Math.max(0, data[i] ?? 0)) * UINT16_MAX);
  const { data: resized, info } = await sharp(quantised, { raw: { width, height, channels: 1 } })
    // Mitchell rings less than the default Lanczos around sharp edges, which would otherwise clip at 0 and 1.
    .resize(size, size, { fit: 'contain', background: { r: 0, g: 0, b: 0 }, kernel: 'mitchell' })
    .toColourspace('grey16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  // Guard against sharp's silent fallbacks (extra bands, 8-bit samples): the byte count must be exactly 1 x 16 bit.
  if (info.channels !== 1 || info.width !== size || info.height !== size || resized.length !== size * size * 2) {
    throw new Error(`sharp returned ${info.width}x${info.height}x${info.channels} (${resized.length} bytes), expected ${size}x${size}x1 16-bit`);
  }
  // Copy out of the Buffer (its offset into Node's pool need not be 2-byte aligned); samples are host order.
  const samples = new Uint16Array(size * size);
  new Uint8Array(samples.buffer).set(resized.subarray(0, samples.byteLength));
  const out = new Float32Array(samples.length);
  for (let i = 0; i < out.length; i++) out[i] = (samples[i] ?? 0) / UINT16_MAX;
  return out;
}

/** Decoded frame to model input: Float32Array of inputSize x inputSize x 1 (HWC) with values in [0, 1]. */
export async function preprocessFrame(source: FrameSource, options: PreprocessOptions): Promise<Float32Array> {
  if (!Number.isInteger(options.inputSize) || options.inputSize < 1) {
    throw new RangeError(`inputSize must be a positive integer, got ${options.inputSize}`);
  }
  const unit = normaliseToUnit(modalityValues(source), source.header);
  return resizeUnitImage(unit, source.header.columns, source.header.rows, options.inputSize);
}
