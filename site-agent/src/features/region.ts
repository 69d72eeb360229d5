/**
 * What every feature family shares: one channel of one image (a plane), the region of interest inside it, and the
 * numeric helpers (percentiles, quantisation) whose exact conventions the feature definitions depend on.
 */

/** One channel of one image, row-major height x width. Values are expected in [0, 1] (the preprocessed range). */
export interface Plane {
  readonly pixels: ArrayLike<number>;
  readonly height: number;
  readonly width: number;
}

/** Pixels of the region of interest: 1 inside, 0 outside, row-major height x width; null means the whole plane. */
export type Region = Uint8Array | null;

/** An image, mask or option that cannot be turned into features; the message says what and where. */
export class FeatureInputError extends Error {
  override readonly name = 'FeatureInputError';
}

export function checkPlane(plane: Plane, region: Region, what = 'image'): void {
  const { height, width } = plane;
  if (!Number.isInteger(height) || height < 1 || !Number.isInteger(width) || width < 1) {
    throw new FeatureInputError(`${what} must be at least 1x1 with integer sides, got ${height}x${width}`);
  }
  if (plane.pixels.length !== height * width) {
    throw new FeatureInputError(`${what} has ${plane.pixels.length} pixels, expected ${height}x${width} = ${height * width}`);
  }
  if (region !== null && region.length !== height * width) {
    throw new FeatureInputError(`mask has ${region.length} pixels, expected ${height}x${width} = ${height * width}`);
  }
}

/** True where (row, col) is in the region (every pixel when there is no region). */
export function inRegion(region: Region, index: number): boolean {
  return region === null || region[index] !== 0;
}

/** Pixel values inside the region, in row-major order, as float64. */
export function regionValues(plane: Plane, region: Region): Float64Array {
  if (region === null) return Float64Array.from(plane.pixels);
  let count = 0;
  for (let i = 0; i < region.length; i++) if (region[i] !== 0) count++;
  const out = new Float64Array(count);
  for (let i = 0, k = 0; i < region.length; i++) if (region[i] !== 0) out[k++] = plane.pixels[i]!;
  return out;
}

/**
 * Percentile of ascending `sorted` values with numpy's default 'linear' method (type 7): rank (n - 1)·q/100,
 * interpolated the way numpy's _lerp does it (from the upper neighbour when t >= 0.5), as pyradiomics uses.
 */
export function percentile(sorted: Float64Array, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = (n - 1) * (q / 100);
  const lo = Math.floor(rank);
  const hi = Math.min(n - 1, lo + 1);
  const t = rank - lo;
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  const diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

/**
 * Fixed-bin discretisation of [0, 1] into `levels` bins of width 1/levels, 0-based: floor(v·levels), with 1 (and
 * anything above) in the top bin and anything below 0 in the bottom one.
 */
export function quantize(value: number, levels: number): number {
  const bin = Math.floor(value * levels);
  return bin < 0 ? 0 : bin >= levels ? levels - 1 : bin;
}

/** Pixels whose whole 3x3 neighbourhood lies inside the plane: the only ones Sobel and LBP(8, 1) can use. */
export function isInterior(height: number, width: number, row: number, col: number): boolean {
  return row >= 1 && col >= 1 && row < height - 1 && col < width - 1;
}
