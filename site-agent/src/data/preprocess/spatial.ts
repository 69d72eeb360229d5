import sharp, { type Sharp } from 'sharp';
import type { Preprocessing } from '@federa/shared';

const UINT16_MAX = 65535;

/** One image plane of values in [0, 1], row-major. */
export interface Plane {
  readonly width: number;
  readonly height: number;
  readonly data: Float32Array;
}

/** Source rectangle kept before resizing, and the size it is resized to (the model input or, letterboxed, less). */
export interface Geometry {
  readonly crop: { readonly left: number; readonly top: number; readonly width: number; readonly height: number };
  readonly target: { readonly width: number; readonly height: number };
  /** Where the resized image sits in the size x size input; the rest is padding. */
  readonly offset: { readonly left: number; readonly top: number };
  readonly size: number;
}

/**
 * Works out crop and resize from the settings. We compute the geometry ourselves instead of using sharp's
 * 'contain' / 'cover' fits so the padding is known exactly: contrast normalisation must skip it, and sharp
 * places its crops and pads by its own rounding rules.
 */
export function planGeometry(width: number, height: number, size: number, settings: Pick<Preprocessing, 'resize' | 'cropFraction'>): Geometry {
  let cropWidth = Math.max(1, Math.round(width * settings.cropFraction));
  let cropHeight = Math.max(1, Math.round(height * settings.cropFraction));
  if (settings.resize === 'center-crop') {
    const side = Math.min(cropWidth, cropHeight);
    cropWidth = side;
    cropHeight = side;
  }
  const crop = { left: Math.floor((width - cropWidth) / 2), top: Math.floor((height - cropHeight) / 2), width: cropWidth, height: cropHeight };
  if (settings.resize !== 'letterbox') return { crop, target: { width: size, height: size }, offset: { left: 0, top: 0 }, size };
  const scale = Math.min(size / cropWidth, size / cropHeight);
  const target = {
    width: Math.min(size, Math.max(1, Math.round(cropWidth * scale))),
    height: Math.min(size, Math.max(1, Math.round(cropHeight * scale))),
  };
  return { crop, target, offset: { left: Math.floor((size - target.width) / 2), top: Math.floor((size - target.height) / 2) }, size };
}

export function cropPlane(plane: Plane, crop: Geometry['crop']): Plane {
  if (crop.left === 0 && crop.top === 0 && crop.width === plane.width && crop.height === plane.height) return plane;
  const data = new Float32Array(crop.width * crop.height);
  for (let y = 0; y < crop.height; y++) {
    const from = (crop.top + y) * plane.width + crop.left;
    data.set(plane.data.subarray(from, from + crop.width), y * crop.width);
  }
  return { width: crop.width, height: crop.height, data };
}

function quantise16(plane: Plane): Uint16Array {
  const out = new Uint16Array(plane.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(Math.min(1, Math.max(0, plane.data[i] ?? 0)) * UINT16_MAX);
  return out;
}

/**
 * Runs one sharp operation on a [0, 1] plane at 16 bits. Sharp (0.35) has no usable float route: single-band
 * Float32Array input comes back as 3-band sRGB with fractional values lost (0.5 became 0 in our probes), and
 * 16-bit input silently becomes 8-bit RGB unless told otherwise. So we quantise to 16 bits (1/65535 steps,
 * finer than any 12-16 bit scanner after windowing), work in the 'grey16' colourspace and read back one ushort
 * band, checking the byte count so a silent fallback cannot slip through.
 */
async function throughSharp16(plane: Plane, operate: (image: Sharp) => Sharp, width: number, height: number): Promise<Plane> {
  const { data: bytes, info } = await operate(sharp(quantise16(plane), { raw: { width: plane.width, height: plane.height, channels: 1 } }))
    .toColourspace('grey16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 1 || info.width !== width || info.height !== height || bytes.length !== width * height * 2) {
    throw new Error(`sharp returned ${info.width}x${info.height}x${info.channels} (${bytes.length} bytes), expected ${width}x${height}x1 16-bit`);
  }
  // Copy out of the Buffer (its offset into Node's pool need not be 2-byte aligned); samples are host order.
  const samples = new Uint16Array(width * height);
  new Uint8Array(samples.buffer).set(bytes.subarray(0, samples.byteLength));
  const data = new Float32Array(samples.length);
  for (let i = 0; i < data.length; i++) data[i] = (samples[i] ?? 0) / UINT16_MAX;
  return { width, height, data };
}

/**
 * Median or Gaussian denoising at the image's own resolution, before resizing, because that is the scale the
 * noise has; after downsampling a speck is already smeared into its neighbours. A separate sharp pass, since
 * within one pipeline sharp always applies median and blur after resize, whatever the call order.
 */
export async function denoisePlane(plane: Plane, denoise: Preprocessing['denoise']): Promise<Plane> {
  if (denoise === 'none') return plane;
  if ('median' in denoise) return throughSharp16(plane, (image) => image.median(2 * denoise.median + 1), plane.width, plane.height);
  // Float precision and a 1% kernel cut-off pin the kernel down; sharp's defaults truncate it at 20% of the peak.
  return throughSharp16(plane, (image) => image.blur({ sigma: denoise.gaussian, precision: 'float', minAmplitude: 0.01 }), plane.width, plane.height);
}

/** Mitchell-Netravali cubic (B = C = 1/3), the kernel sharp uses for our downsampling, so both directions match. */
function mitchell(x: number): number {
  const a = Math.abs(x);
  if (a < 1) return (7 * a ** 3 - 12 * a ** 2 + 16 / 3) / 6;
  if (a < 2) return ((-7 / 3) * a ** 3 + 12 * a ** 2 - 20 * a + 32 / 3) / 6;
  return 0;
}

/**
 * Enlarges one axis by cubic interpolation with pixel centres aligned ((j + 0.5) * in / out - 0.5) and edge
 * pixels repeated, in float, so no quantisation either. Kernel overshoot is clamped back into [0, 1].
 */
function upsampleAxis(plane: Plane, length: number, axis: 'x' | 'y'): Plane {
  const { width, height, data } = plane;
  const inLength = axis === 'x' ? width : height;
  const outWidth = axis === 'x' ? length : width;
  const outHeight = axis === 'x' ? height : length;
  const out = new Float32Array(outWidth * outHeight);
  const scale = inLength / length;
  for (let j = 0; j < length; j++) {
    const x = (j + 0.5) * scale - 0.5;
    const base = Math.floor(x);
    const t = x - base;
    const taps = [-1, 0, 1, 2].map((k) => ({ index: Math.min(inLength - 1, Math.max(0, base + k)), weight: mitchell(t - k) }));
    const lines = axis === 'x' ? height : width;
    for (let line = 0; line < lines; line++) {
      let sum = 0;
      for (const tap of taps) sum += tap.weight * (data[axis === 'x' ? line * width + tap.index : tap.index * width + line] ?? 0);
      out[axis === 'x' ? line * outWidth + j : j * outWidth + line] = Math.min(1, Math.max(0, sum));
    }
  }
  return { width: outWidth, height: outHeight, data: out };
}

/**
 * Resizes to the target size (aspect already settled by the geometry). Shrinking goes through sharp, whose
 * reduce is properly anti-aliased. Enlarging does not: libvips (in sharp 0.35) upsamples with a quarter-pixel
 * shift, and shifts the other axis by half a pixel even when that axis keeps its size (an 8 x 1 ramp resized to
 * 8 x 2 came back with every column moved), so enlarged axes are interpolated here instead.
 */
export async function resizePlane(plane: Plane, width: number, height: number): Promise<Plane> {
  if (plane.width === width && plane.height === height) return plane;
  const shrinkWidth = Math.min(plane.width, width);
  const shrinkHeight = Math.min(plane.height, height);
  let out = plane;
  if (shrinkWidth < plane.width || shrinkHeight < plane.height) {
    // Mitchell rings less than the default Lanczos around sharp edges, which would otherwise clip at 0 and 1.
    out = await throughSharp16(plane, (image) => image.resize(shrinkWidth, shrinkHeight, { fit: 'fill', kernel: 'mitchell' }), shrinkWidth, shrinkHeight);
  }
  if (width > out.width) out = upsampleAxis(out, width, 'x');
  if (height > out.height) out = upsampleAxis(out, height, 'y');
  return out;
}

/** Places the resized image in the size x size input; padding is 0 (black, or the mean after z-scoring). */
export function embedPlane(plane: Plane, geometry: Geometry): Float32Array {
  const { size, offset } = geometry;
  if (plane.width === size && plane.height === size) return plane.data;
  const out = new Float32Array(size * size);
  for (let y = 0; y < plane.height; y++) out.set(plane.data.subarray(y * plane.width, (y + 1) * plane.width), (offset.top + y) * size + offset.left);
  return out;
}

/**
 * CLAHE through sharp, whose libvips implementation only takes 8-bit images ("hist_local: image must be
 * VIPS_FORMAT_UCHAR"), so this one step runs at 256 levels. Each pixel is equalised over a window of about
 * side / tiles pixels, clipped to the image because libvips refuses windows larger than the image.
 */
export async function clahePlane(plane: Plane, tiles: number, maxSlope: number): Promise<Plane> {
  const quantised = new Uint8Array(plane.data.length);
  for (let i = 0; i < quantised.length; i++) quantised[i] = Math.round(Math.min(1, Math.max(0, plane.data[i] ?? 0)) * 255);
  const width = Math.min(plane.width, Math.max(1, Math.ceil(plane.width / tiles)));
  const height = Math.min(plane.height, Math.max(1, Math.ceil(plane.height / tiles)));
  const { data: bytes, info } = await sharp(quantised, { raw: { width: plane.width, height: plane.height, channels: 1 } })
    .clahe({ width, height, maxSlope })
    .toColourspace('b-w')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 1 || bytes.length !== plane.width * plane.height) {
    throw new Error(`sharp returned ${info.width}x${info.height}x${info.channels} for CLAHE, expected ${plane.width}x${plane.height}x1`);
  }
  const data = new Float32Array(bytes.length);
  for (let i = 0; i < data.length; i++) data[i] = (bytes[i] ?? 0) / 255;
  return { width: plane.width, height: plane.height, data };
}
