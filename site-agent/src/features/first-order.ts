/**
 * First-order (histogram) statistics of the grey levels inside a region, following pyradiomics' firstorder class
 * (radiomics/firstorder.py, which cites the IBSI definitions) with a voxelArrayShift of 0:
 * - variance, standard deviation, skewness and kurtosis use population moments (divide by N);
 * - kurtosis is the IBSI *excess* kurtosis mu4 / sigma^4 - 3 (pyradiomics reports mu4 / sigma^4, 3 more);
 * - a flat region (min = max) has skewness and excess kurtosis 0, as pyradiomics returns for flat regions;
 * - percentiles use numpy's default linear interpolation (np.percentile), median = 50th percentile;
 * - energy is the sum of squares (grows with the region's size, as in pyradiomics), RMS = sqrt(energy / N);
 * - robust MAD is the mean absolute deviation of the values in the closed [P10, P90] range from their own mean
 *   (NaN for a region of two distinct values, where that range holds none);
 * - entropy (log2) and uniformity use a fixed-bin histogram: `histogramBins` bins of equal width over [0, 1]
 *   (value 1 in the top bin). pyradiomics bins by width from the region's minimum; over [0, 1] with width
 *   1/bins the two agree except at exactly 1. Entropy sums over non-empty bins, where pyradiomics adds 2.2e-16 to
 *   p inside the log (a difference below 1e-15).
 */
import { checkPlane, FeatureInputError, percentile, quantize, regionValues, type Plane, type Region } from './region.js';

export const FIRST_ORDER_FEATURES = [
  'count',
  'mean',
  'variance',
  'std',
  'skewness',
  'excess_kurtosis',
  'min',
  'max',
  'median',
  'p10',
  'p90',
  'iqr',
  'range',
  'mad',
  'robust_mad',
  'energy',
  'rms',
  'entropy',
  'uniformity',
] as const;

export type FirstOrderFeature = (typeof FIRST_ORDER_FEATURES)[number];
export type FirstOrderStatistics = Record<FirstOrderFeature, number>;

export const DEFAULT_HISTOGRAM_BINS = 32;

export interface FirstOrderOptions {
  /** Bins of the [0, 1] histogram behind entropy and uniformity (integer >= 2); default 32. */
  histogramBins?: number;
}

/** Statistics of a set of values (at least one, all finite). */
export function firstOrderStatistics(values: ArrayLike<number>, options: FirstOrderOptions = {}): FirstOrderStatistics {
  const bins = options.histogramBins ?? DEFAULT_HISTOGRAM_BINS;
  if (!Number.isInteger(bins) || bins < 2) throw new FeatureInputError(`histogramBins must be an integer >= 2, got ${bins}`);
  const n = values.length;
  if (n === 0) throw new FeatureInputError('first-order statistics need at least one value');
  const sorted = Float64Array.from(values).sort();
  const min = sorted[0]!;
  const max = sorted[n - 1]!;

  let sum = 0;
  let energy = 0;
  for (const v of sorted) {
    sum += v;
    energy += v * v;
  }
  const mean = sum / n;
  let m2 = 0;
  let m3 = 0;
  let m4 = 0;
  let absDev = 0;
  for (const v of sorted) {
    const d = v - mean;
    const d2 = d * d;
    m2 += d2;
    m3 += d2 * d;
    m4 += d2 * d2;
    absDev += Math.abs(d);
  }
  m2 /= n;
  m3 /= n;
  m4 /= n;
  // Moments of a flat region are rounding noise (the mean may differ from the value in its last bit).
  const flat = min === max;

  const p10 = percentile(sorted, 10);
  const p90 = percentile(sorted, 90);

  const histogram = new Float64Array(bins);
  for (const v of sorted) histogram[quantize(v, bins)]! += 1;
  let entropy = 0;
  let uniformity = 0;
  for (const count of histogram) {
    if (count === 0) continue;
    const p = count / n;
    entropy -= p * Math.log2(p);
    uniformity += p * p;
  }

  return {
    count: n,
    mean,
    variance: m2,
    std: Math.sqrt(m2),
    skewness: flat ? 0 : m3 / m2 ** 1.5,
    excess_kurtosis: flat ? 0 : m4 / (m2 * m2) - 3,
    min,
    max,
    median: percentile(sorted, 50),
    p10,
    p90,
    iqr: percentile(sorted, 75) - percentile(sorted, 25),
    range: max - min,
    mad: absDev / n,
    robust_mad: robustMad(sorted, p10, p90),
    energy,
    rms: Math.sqrt(energy / n),
    entropy,
    uniformity,
  };
}

/** Values of the region in FIRST_ORDER_FEATURES order; the region must hold at least one pixel. */
export function firstOrderFeatures(plane: Plane, region: Region, options: FirstOrderOptions = {}): Float64Array {
  checkPlane(plane, region);
  const values = regionValues(plane, region);
  if (values.length === 0) throw new FeatureInputError('the mask selects no pixels');
  const stats = firstOrderStatistics(values, options);
  return Float64Array.from(FIRST_ORDER_FEATURES, (name) => stats[name]);
}

function robustMad(sorted: Float64Array, p10: number, p90: number): number {
  let sum = 0;
  let count = 0;
  for (const v of sorted) {
    if (v >= p10 && v <= p90) {
      sum += v;
      count++;
    }
  }
  // Empty only for two distinct values (both fall outside [P10, P90]): NaN, as pyradiomics' nanmean gives.
  if (count === 0) return Number.NaN;
  const mean = sum / count;
  let dev = 0;
  for (const v of sorted) if (v >= p10 && v <= p90) dev += Math.abs(v - mean);
  return dev / count;
}
