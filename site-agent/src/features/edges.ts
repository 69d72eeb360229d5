/**
 * Gradient and edge features. The gradient is the 3x3 Sobel operator scaled by 1/8, so that a ramp rising by s per
 * pixel has gradient magnitude exactly s (grey levels per pixel):
 *   gx = ([p(r-1,c+1) + 2p(r,c+1) + p(r+1,c+1)] - [p(r-1,c-1) + 2p(r,c-1) + p(r+1,c-1)]) / 8, gy likewise down
 *   the rows, magnitude = sqrt(gx^2 + gy^2); for values in [0, 1] it lies in [0, sqrt(0.5)].
 * Only pixels of the region whose whole 3x3 neighbourhood lies inside the image count (no padding artefacts at the
 * border); the neighbours themselves may lie outside the region, so the region's boundary contrast is included, as
 * when pyradiomics filters the whole image before masking. With no such pixel every value is NaN.
 *
 * Edge density ('density') is the fraction of counted pixels whose magnitude is strictly above a threshold: by default
 * `{ relative: 0.25 }`, a quarter of the largest magnitude among the counted pixels (so a flat region has density
 * 0), or `{ absolute: t }`, a fixed t in grey levels per pixel (comparable across images whatever their contrast).
 */
import { checkPlane, FeatureInputError, isInterior, percentile, inRegion, type Plane, type Region } from './region.js';

export const EDGE_FEATURES = ['gradient_mean', 'gradient_std', 'gradient_median', 'gradient_p90', 'gradient_max', 'density'] as const;

export type EdgeThreshold = { relative: number } | { absolute: number };

export const DEFAULT_EDGE_THRESHOLD: EdgeThreshold = { relative: 0.25 };

export interface EdgeOptions {
  edgeThreshold?: EdgeThreshold;
}

/** Sobel gradient magnitude (scaled as above) at every pixel, NaN on the one-pixel image border. */
export function sobelMagnitude(plane: Plane): Float64Array {
  checkPlane(plane, null);
  const { pixels: p, height, width } = plane;
  const out = new Float64Array(height * width).fill(Number.NaN);
  for (let r = 1; r < height - 1; r++) {
    for (let c = 1; c < width - 1; c++) {
      const up = (r - 1) * width + c;
      const mid = r * width + c;
      const down = (r + 1) * width + c;
      const gx = (p[up + 1]! + 2 * p[mid + 1]! + p[down + 1]! - (p[up - 1]! + 2 * p[mid - 1]! + p[down - 1]!)) / 8;
      const gy = (p[down - 1]! + 2 * p[down]! + p[down + 1]! - (p[up - 1]! + 2 * p[up]! + p[up + 1]!)) / 8;
      out[mid] = Math.sqrt(gx * gx + gy * gy);
    }
  }
  return out;
}

/** Values in EDGE_FEATURES order (std is the population standard deviation; percentiles as np.percentile). */
export function edgeFeatures(plane: Plane, region: Region, options: EdgeOptions = {}): Float64Array {
  checkPlane(plane, region);
  const threshold = options.edgeThreshold ?? DEFAULT_EDGE_THRESHOLD;
  checkThreshold(threshold);
  const magnitude = sobelMagnitude(plane);
  const counted: number[] = [];
  for (let r = 0; r < plane.height; r++) {
    for (let c = 0; c < plane.width; c++) {
      const i = r * plane.width + c;
      if (isInterior(plane.height, plane.width, r, c) && inRegion(region, i)) counted.push(magnitude[i]!);
    }
  }
  if (counted.length === 0) return new Float64Array(EDGE_FEATURES.length).fill(Number.NaN);

  const sorted = Float64Array.from(counted).sort();
  const n = sorted.length;
  let sum = 0;
  for (const g of sorted) sum += g;
  const mean = sum / n;
  let squares = 0;
  for (const g of sorted) squares += (g - mean) * (g - mean);
  const max = sorted[n - 1]!;
  const cut = 'relative' in threshold ? threshold.relative * max : threshold.absolute;
  let above = 0;
  for (const g of sorted) if (g > cut) above++;
  return Float64Array.of(mean, Math.sqrt(squares / n), percentile(sorted, 50), percentile(sorted, 90), max, above / n);
}

function checkThreshold(threshold: EdgeThreshold): void {
  if ('relative' in threshold) {
    if (!(threshold.relative >= 0 && threshold.relative <= 1)) {
      throw new FeatureInputError(`a relative edge threshold must be in [0, 1], got ${threshold.relative}`);
    }
  } else if (!(threshold.absolute >= 0 && Number.isFinite(threshold.absolute))) {
    throw new FeatureInputError(`an absolute edge threshold must be finite and >= 0, got ${threshold.absolute}`);
  }
}
