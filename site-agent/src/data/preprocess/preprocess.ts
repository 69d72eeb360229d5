import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { canonicalJson, DEFAULT_PREPROCESSING, windowValues, type Preprocessing, type WindowSetting } from '@federa/shared';
import type { DicomHeader } from '../dicom/header.js';
import type { PixelArray } from '../dicom/pixels.js';
import { DicomRejection } from '../dicom/rejection.js';
import { normalisePlane } from './contrast.js';
import type { RasterImage } from './raster.js';
import { ImageRejection } from './rejection.js';
import { cropPlane, denoisePlane, embedPlane, planGeometry, resizePlane, type Plane } from './spatial.js';

/** What preprocessing needs from a decoded DICOM image: its header and one frame of stored values. */
export interface FrameSource {
  readonly file: string;
  readonly header: DicomHeader;
  readonly pixels: PixelArray;
}

/** Any image the pipeline takes: a DICOM frame, or a PNG/JPEG raster. */
export type ImageSource = FrameSource | RasterImage;

export interface PreprocessOptions {
  /** Side of the square model input in pixels. */
  readonly inputSize: number;
  /** Channels of the model input: 1 (grey) or 3 (RGB). Defaults to 1. */
  readonly channels?: 1 | 3;
  /** The study's pipeline; defaults to the one every study had before pipelines were declarable. */
  readonly preprocessing?: Preprocessing;
}

/**
 * Bump whenever decoding or preprocessing code changes what a file turns into: it is part of the pipeline hash,
 * so tensors cached by an older agent are recomputed instead of silently mixed with new ones.
 */
export const PREPROCESS_VERSION = 1;

/**
 * Everything that determines the tensor a file becomes, hashed: the study's settings, the input shape, our
 * pipeline version and libvips' (whose resampling could change between releases).
 */
export function pipelineHash(options: PreprocessOptions): string {
  const key = {
    version: PREPROCESS_VERSION,
    vips: sharp.versions.vips,
    inputSize: options.inputSize,
    channels: options.channels ?? 1,
    preprocessing: options.preprocessing ?? DEFAULT_PREPROCESSING,
  };
  return createHash('sha256').update(canonicalJson(key)).digest('hex');
}

export function isRasterImage(source: ImageSource): source is RasterImage {
  return !('header' in source);
}

/** ITU-R BT.601 luma weights, the usual choice when a colour image has to feed a grey model. */
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

function isMonochrome(header: DicomHeader): boolean {
  return header.photometricInterpretation === 'MONOCHROME1' || header.photometricInterpretation === 'MONOCHROME2';
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
  if (isMonochrome(h)) {
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
 * Interleaved RGB in the sample range for the colour models. YBR_FULL (and YBR_FULL_422, which the reader has
 * already upsampled to full Y Cb Cr triplets) uses the full-range inverse of PS3.3 C.7.6.3.1.2, with chroma
 * centred on half the range; results outside the range (rounding in the encoder) are clamped.
 */
export function rgbValues(source: FrameSource): { rgb: Float64Array; max: number } {
  const { header: h, pixels } = source;
  const count = h.rows * h.columns;
  const photometric = h.photometricInterpretation;
  if (photometric === 'PALETTE COLOR' && h.samplesPerPixel === 1) {
    const lut = applyPaletteLut(source);
    return { rgb: Float64Array.from(lut), max: 2 ** (h.paletteLut?.bitsPerEntry ?? 16) - 1 };
  }
  const max = 2 ** h.bitsStored - 1;
  if (photometric === 'RGB' && h.samplesPerPixel === 3) {
    const rgb = new Float64Array(count * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = pixels[i] ?? 0;
    return { rgb, max };
  }
  if ((photometric === 'YBR_FULL' || photometric === 'YBR_FULL_422') && h.samplesPerPixel === 3) {
    const half = 2 ** (h.bitsStored - 1);
    const rgb = new Float64Array(count * 3);
    const clamp = (v: number): number => Math.min(max, Math.max(0, v));
    for (let i = 0; i < count; i++) {
      const y = pixels[i * 3] ?? 0;
      const cb = (pixels[i * 3 + 1] ?? 0) - half;
      const cr = (pixels[i * 3 + 2] ?? 0) - half;
      rgb[i * 3] = clamp(y + 1.402 * cr);
      rgb[i * 3 + 1] = clamp(y - 0.344136 * cb - 0.714136 * cr);
      rgb[i * 3 + 2] = clamp(y + 1.772 * cb);
    }
    return { rgb, max };
  }
  throw new DicomRejection(source.file, 'unsupported-pixel-format', `Photometric Interpretation ${photometric} cannot be converted to RGB for the model`);
}

/** How stored or modality values become [0, 1]. */
type IntensityMapping = { kind: 'window'; center: number; width: number } | { kind: 'min-max' } | { kind: 'full-range'; max: number };

/**
 * The mapping a window setting means for this DICOM image. Monochrome: 'file' is the file's own VOI window
 * (min-max when it has none), 'none' min-max, presets and explicit windows as declared; the ct-* presets are
 * in HU, so another modality is refused rather than windowed into noise. Colour and palette images have no
 * modality values: 'file' uses their full sample range (min-max would stretch flat-coloured captures),
 * 'none' min-max, and a declared window is refused.
 */
export function dicomIntensityMapping(header: DicomHeader, window: WindowSetting, file: string): IntensityMapping {
  const declared = windowValues(window);
  if (!isMonochrome(header)) {
    if (declared !== undefined) {
      throw new ImageRejection(file, 'window-not-applicable', `the study's window applies to monochrome modality values; this image is ${header.photometricInterpretation}`);
    }
    if (window === 'none') return { kind: 'min-max' };
    const palette = header.photometricInterpretation === 'PALETTE COLOR' ? header.paletteLut : undefined;
    // Palette luma lives in the table's range, not the index range.
    return { kind: 'full-range', max: 2 ** (palette?.bitsPerEntry ?? header.bitsStored) - 1 };
  }
  if (typeof window === 'string' && window.startsWith('ct-') && header.modality !== 'CT') {
    throw new ImageRejection(file, 'window-not-applicable', `window "${window}" is in Hounsfield units and applies to CT only; this image's modality is ${header.modality ?? 'not recorded'}`);
  }
  if (declared !== undefined) return { kind: 'window', ...declared };
  if (window === 'file' && header.windowCenter !== undefined && header.windowWidth !== undefined) {
    return { kind: 'window', center: header.windowCenter, width: header.windowWidth };
  }
  return { kind: 'min-max' };
}

/**
 * PNG and JPEG hold display values, already windowed by whoever exported them: 'file' takes their full sample
 * range, 'none' min-max, and a declared window (modality units) cannot apply, so the file is refused.
 */
export function rasterIntensityMapping(image: RasterImage, window: WindowSetting): IntensityMapping {
  if (windowValues(window) !== undefined) {
    throw new ImageRejection(image.file, 'window-not-applicable', `the study's window is in modality units, which a ${image.format.toUpperCase()} does not carry`);
  }
  return window === 'none' ? { kind: 'min-max' } : { kind: 'full-range', max: 2 ** image.bitDepth - 1 };
}

/** Applies a mapping; min-max spans every given value (all channels together, so colour balance survives). */
export function mapToUnit(values: ArrayLike<number>, mapping: IntensityMapping): Float32Array {
  const out = new Float32Array(values.length);
  if (mapping.kind === 'full-range') {
    for (let i = 0; i < values.length; i++) out[i] = Math.min(1, Math.max(0, (values[i] ?? 0) / mapping.max));
  } else if (mapping.kind === 'window') {
    // DICOM linear VOI function (PS3.3 C.11.2.1.2.1), so the model sees what radiologists see.
    const c = mapping.center - 0.5;
    const w = mapping.width - 1;
    for (let i = 0; i < values.length; i++) {
      const x = values[i] ?? 0;
      // Width 1 degenerates to a threshold at the centre.
      const y = w <= 0 ? (x > c ? 1 : 0) : (x - c) / w + 0.5;
      out[i] = Math.min(1, Math.max(0, y));
    }
  } else {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i] ?? 0;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const span = max - min;
    // A constant frame carries no contrast; zeros keep it finite instead of dividing by zero.
    if (span > 0) for (let i = 0; i < values.length; i++) out[i] = ((values[i] ?? 0) - min) / span;
  }
  return out;
}

/**
 * Grey modality values to [0, 1] under the study's window, MONOCHROME1 (high value = dark) inverted so every
 * site's images share one polarity.
 */
export function normaliseToUnit(values: Float64Array, header: DicomHeader, window: WindowSetting = 'file', file = 'image'): Float32Array {
  const out = mapToUnit(values, dicomIntensityMapping(header, window, file));
  if (header.photometricInterpretation === 'MONOCHROME1') {
    for (let i = 0; i < out.length; i++) out[i] = 1 - (out[i] ?? 0);
  }
  return out;
}

/** [0, 1] planes at the image's own size, before any geometry: one plane (grey) or three (R, G, B). */
interface UnitImage {
  readonly width: number;
  readonly height: number;
  readonly planes: Float32Array[];
}

function splitPlanes(interleaved: Float32Array, count: number): Float32Array[] {
  const planes = [new Float32Array(count), new Float32Array(count), new Float32Array(count)];
  for (let i = 0; i < count; i++) for (let c = 0; c < 3; c++) (planes[c] as Float32Array)[i] = interleaved[i * 3 + c] ?? 0;
  return planes;
}

/**
 * Intensity stage. A grey model gets one plane (luma for colour images); an RGB model keeps a colour image's
 * three channels and gets one grey plane for monochrome images, replicated after the pipeline so the three
 * channels are identical.
 */
function unitImage(source: ImageSource, window: WindowSetting, channels: 1 | 3): UnitImage {
  if (isRasterImage(source)) {
    const mapping = rasterIntensityMapping(source, window);
    const count = source.width * source.height;
    const { pixels } = source;
    if (source.channels === 1) return { width: source.width, height: source.height, planes: [mapToUnit(pixels, mapping)] };
    if (channels === 3) return { width: source.width, height: source.height, planes: splitPlanes(mapToUnit(pixels, mapping), count) };
    const luma = new Float64Array(count);
    for (let i = 0; i < count; i++) luma[i] = LUMA[0] * (pixels[i * 3] ?? 0) + LUMA[1] * (pixels[i * 3 + 1] ?? 0) + LUMA[2] * (pixels[i * 3 + 2] ?? 0);
    return { width: source.width, height: source.height, planes: [mapToUnit(luma, mapping)] };
  }
  const { header } = source;
  const size = { width: header.columns, height: header.rows };
  if (channels === 3 && !isMonochrome(header)) {
    const mapping = dicomIntensityMapping(header, window, source.file);
    const { rgb, max } = rgbValues(source);
    // The RGB range (palette table entries) can differ from the one the grey mapping assumed.
    const mapped = mapToUnit(rgb, mapping.kind === 'full-range' ? { kind: 'full-range', max } : mapping);
    return { ...size, planes: splitPlanes(mapped, header.rows * header.columns) };
  }
  return { ...size, planes: [normaliseToUnit(modalityValues(source), header, window, source.file)] };
}

/** Geometry, denoising and contrast for one plane; returns size x size values. */
async function finishPlane(plane: Plane, settings: Preprocessing, size: number): Promise<Float32Array> {
  const geometry = planGeometry(plane.width, plane.height, size, settings);
  const denoised = await denoisePlane(cropPlane(plane, geometry.crop), settings.denoise);
  const resized = await resizePlane(denoised, geometry.target.width, geometry.target.height);
  return embedPlane(await normalisePlane(resized, settings.normalise), geometry);
}

/**
 * Decoded image to model input under the study's pipeline: Float32Array of inputSize x inputSize x channels
 * (HWC). Values are in [0, 1] except after z-scoring. Throws DicomRejection / ImageRejection for images the
 * pipeline cannot honour (the loader records those per file).
 */
export async function preprocessImage(source: ImageSource, options: PreprocessOptions): Promise<Float32Array> {
  const size = options.inputSize;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`inputSize must be a positive integer, got ${size}`);
  const channels = options.channels ?? 1;
  if (channels !== 1 && channels !== 3) throw new RangeError(`channels must be 1 or 3, got ${String(channels)}`);
  const settings = options.preprocessing ?? DEFAULT_PREPROCESSING;
  const unit = unitImage(source, settings.window, channels);
  const planes = await Promise.all(unit.planes.map((data) => finishPlane({ width: unit.width, height: unit.height, data }, settings, size)));
  if (channels === 1) return planes[0] as Float32Array;
  const pixels = size * size;
  const out = new Float32Array(pixels * 3);
  for (let c = 0; c < 3; c++) {
    const plane = (planes[c] ?? planes[0]) as Float32Array;
    for (let i = 0; i < pixels; i++) out[i * 3 + c] = plane[i] ?? 0;
  }
  return out;
}

/** Decoded DICOM frame (or PNG/JPEG) to model input; see preprocessImage. */
export const preprocessFrame = preprocessImage;

/** Letterboxes a [0, 1] grey image into size x size (aspect kept, zero padding) at 16-bit precision. */
export async function resizeUnitImage(data: Float32Array, width: number, height: number, size: number): Promise<Float32Array> {
  return finishPlane({ width, height, data }, DEFAULT_PREPROCESSING, size);
}
