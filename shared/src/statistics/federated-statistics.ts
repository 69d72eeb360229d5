import { z } from 'zod';

/**
 * Federated statistics through the encrypted sum: each site encodes what it has seen of every column (an image
 * channel's pixel intensities, an image feature such as GLCM contrast, ...) as a vector of additive quantities, the
 * sites' vectors are summed exactly as model updates are, and only the consortium's totals are ever decrypted. Per
 * column the vector holds [count, Σ(x − c)/h, Σ((x − c)/h)², histogram bins...] divided by the column's `per`, with c
 * the histogram's centre and h its half-width: shifting by c keeps the sum of squares from cancelling
 * catastrophically, and scaling by h and `per` keeps every slot within the encrypted sum's range (a column of pixel
 * intensities counts images of `per` pixels, so its slots grow with images, not pixels). From the totals follow the
 * count, mean, variance and standard deviation exactly, and min, max and quantiles to the histogram's resolution: a
 * minimum is not a sum, so the consortium's extremes are bounded by the first and last non-empty bins instead of
 * revealed.
 */
export const statisticsColumnSchema = z
  .object({
    feature: z.string().min(1).max(100),
    bins: z.int().min(1).max(4_096),
    min: z.number(),
    max: z.number(),
    /** Values per counted unit: the pixels of one image for an intensity column, 1 for one value per image. */
    per: z.int().min(1).max(1 << 24).default(1),
  })
  .strict()
  .refine((c) => c.max > c.min, { message: 'max must be greater than min', path: ['max'] });

export const statisticsPlanSchema = z
  .object({ columns: z.array(statisticsColumnSchema).min(1).max(4_096) })
  .strict()
  .refine((plan) => new Set(plan.columns.map((c) => c.feature)).size === plan.columns.length, { message: 'features must be unique', path: ['columns'] });

export type StatisticsColumn = z.output<typeof statisticsColumnSchema>;
export type StatisticsPlan = z.output<typeof statisticsPlanSchema>;

/** Values a column takes in the vector: count, scaled shifted sum, scaled shifted sum of squares, then the bins. */
const fixedSlots = 3;

/** The largest magnitude a slot may reach at one site: the encrypted sum's range (CKKS maxAbsValue). */
export const MAX_STATISTICS_SLOT = 10_000;

export function statisticsVectorLength(plan: StatisticsPlan): number {
  return plan.columns.reduce((n, c) => n + fixedSlots + c.bins, 0);
}

/** The histogram bin of a value: values below min go to the first bin, values above max to the last (clamped). */
function binOf(value: number, column: StatisticsColumn): number {
  const at = Math.floor(((value - column.min) / (column.max - column.min)) * column.bins);
  return Math.min(column.bins - 1, Math.max(0, at));
}

/**
 * One site's vector: `values[k]` holds column k's values at this site (every value finite; a whole number of units).
 * Throws RangeError naming the column for fewer units than `minCount` (a statistic of too few images says too much
 * about each), a non-finite value, or values so far outside the column's range that a slot leaves the encrypted
 * sum's range.
 */
export function encodeSiteStatistics(plan: StatisticsPlan, values: ReadonlyArray<ArrayLike<number>>, minCount = 1): Float64Array {
  if (values.length !== plan.columns.length) throw new RangeError(`statistics need one column of values per feature (${plan.columns.length}), got ${values.length}`);
  const out = new Float64Array(statisticsVectorLength(plan));
  let base = 0;
  plan.columns.forEach((column, k) => {
    const columnValues = values[k] as ArrayLike<number>;
    const name = column.feature;
    if (columnValues.length % column.per !== 0) throw new RangeError(`feature ${name}: ${columnValues.length} values are not whole units of ${column.per}`);
    const units = columnValues.length / column.per;
    if (units < minCount) throw new RangeError(`feature ${name}: ${units} ${column.per > 1 ? 'images' : 'values'}, fewer than the ${minCount} this site shares a statistic of`);
    const centre = (column.min + column.max) / 2;
    const half = (column.max - column.min) / 2;
    let sum = 0;
    let squares = 0;
    for (let i = 0; i < columnValues.length; i++) {
      const x = columnValues[i] as number;
      if (!Number.isFinite(x)) throw new RangeError(`feature ${name}: value ${i} is ${x}; statistics need finite values`);
      const d = (x - centre) / half;
      sum += d;
      squares += d * d;
      const slot = base + fixedSlots + binOf(x, column);
      out[slot] = (out[slot] as number) + 1;
    }
    out[base] = columnValues.length;
    out[base + 1] = sum;
    out[base + 2] = squares;
    for (let i = base; i < base + fixedSlots + column.bins; i++) out[i] = (out[i] as number) / column.per;
    const largest = Math.max(Math.abs(out[base + 1] as number), out[base + 2] as number, units);
    if (largest > MAX_STATISTICS_SLOT) {
      throw new RangeError(
        `feature ${name}: its sums reach ${largest.toPrecision(3)}, past the ${MAX_STATISTICS_SLOT} an encrypted sum holds per site: ${units > MAX_STATISTICS_SLOT ? 'too many images for one statistic' : `its values lie far outside [${column.min}, ${column.max}]; widen the range`}`,
      );
    }
    base += fixedSlots + column.bins;
  });
  return out;
}

/** The consortium's figures for one column, from the summed vectors. */
export interface FeatureStatistics {
  feature: string;
  /** Values counted (pixels for an intensity column). */
  count: number;
  /** Units counted: images for an intensity column, else the same as count. */
  units: number;
  mean: number;
  /** Sample variance (n − 1); NaN for a single value. */
  variance: number;
  std: number;
  /** Lower edge of the first non-empty bin: the minimum is at least this. */
  minAtLeast: number;
  /** Upper edge of the last non-empty bin: the maximum is at most this. */
  maxAtMost: number;
  histogram: { edges: number[]; counts: number[] };
  quantiles: Array<{ q: number; value: number }>;
}

export const DEFAULT_QUANTILES: readonly number[] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/**
 * Decodes the sum of sites' vectors. Counts arrive through CKKS with errors near 1e-8 per slot, so unit counts are
 * rounded to integers (an error above 0.01 means the vector is not a sum of encodings: refused) and bins to whole
 * values after scaling back by `per`. `quantiles` are read off the merged histogram, linearly within a bin.
 */
export function decodeConsortiumStatistics(plan: StatisticsPlan, sum: ArrayLike<number>, quantiles: readonly number[] = DEFAULT_QUANTILES): FeatureStatistics[] {
  if (sum.length !== statisticsVectorLength(plan)) throw new RangeError(`a statistics sum for this plan has ${statisticsVectorLength(plan)} values, got ${sum.length}`);
  let base = 0;
  return plan.columns.map((column) => {
    const { feature, bins, min, max, per } = column;
    const width = (max - min) / bins;
    const edges = Array.from({ length: bins + 1 }, (_, i) => min + i * width);
    const centre = (min + max) / 2;
    const half = (max - min) / 2;
    const units = Math.round(sum[base] as number);
    if (Math.abs((sum[base] as number) - units) > 0.01 || units < 0) throw new RangeError(`feature ${feature}'s count is ${sum[base] as number}, not a count: the vector is not a sum of site statistics`);
    const count = units * per;
    const counts = Array.from({ length: bins }, (_, b) => {
      const value = (sum[base + fixedSlots + b] as number) * per;
      const rounded = Math.round(value);
      // Fractions of an image's pixels add up to whole pixels; much more than rounding error away is not a sum.
      if (Math.abs(value - rounded) > Math.max(0.01, per * 1e-6) || rounded < 0) throw new RangeError(`feature ${feature}'s bin ${b} is ${value}, not a count: the vector is not a sum of site statistics`);
      return rounded;
    });
    const binned = counts.reduce((a, c) => a + c, 0);
    if (binned !== count) throw new RangeError(`feature ${feature}: its bins hold ${binned} values but its count is ${count}`);
    const shifted = count > 0 ? ((sum[base + 1] as number) * per) / count : Number.NaN;
    const squares = (sum[base + 2] as number) * per;
    const variance = count > 1 ? (Math.max(0, squares - count * shifted * shifted) / (count - 1)) * half * half : Number.NaN;
    const first = counts.findIndex((c) => c > 0);
    const last = bins - 1 - [...counts].reverse().findIndex((c) => c > 0);
    base += fixedSlots + bins;
    return {
      feature,
      count,
      units,
      mean: centre + shifted * half,
      variance,
      std: Math.sqrt(variance),
      minAtLeast: first < 0 ? Number.NaN : (edges[first] as number),
      maxAtMost: first < 0 ? Number.NaN : (edges[last + 1] as number),
      histogram: { edges, counts },
      quantiles: quantiles.map((q) => ({ q, value: histogramQuantile(counts, edges, q) })),
    };
  });
}

/** The q-quantile (0 <= q <= 1) of values binned as `counts` over `edges`, linear within the bin it falls in. */
export function histogramQuantile(counts: readonly number[], edges: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`a quantile must be within [0, 1], got ${q}`);
  if (edges.length !== counts.length + 1) throw new RangeError(`${counts.length} bins need ${counts.length + 1} edges, got ${edges.length}`);
  const total = counts.reduce((a, c) => a + c, 0);
  if (total === 0) return Number.NaN;
  const target = q * total;
  let below = 0;
  for (let b = 0; b < counts.length; b++) {
    const c = counts[b] as number;
    if (c > 0 && below + c >= target) {
      const fraction = (target - below) / c;
      return (edges[b] as number) + fraction * ((edges[b + 1] as number) - (edges[b] as number));
    }
    below += c;
  }
  return edges[edges.length - 1] as number;
}
