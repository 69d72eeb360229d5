import { z } from 'zod';

/**
 * Federated statistics through the encrypted sum: each site encodes what it has seen of every feature (an image
 * channel's intensities, a radiomic feature, ...) as a vector of additive quantities, the sites' vectors are summed
 * exactly as model updates are, and only the consortium's totals are ever decrypted. Per feature the vector holds
 * [count, Σ(x − c), Σ(x − c)², histogram bins...], with c the histogram's centre (shifting by c keeps the sum of
 * squares from cancelling catastrophically when the mean is far from 0). From the totals follow the count, mean,
 * variance and standard deviation exactly, and min, max and quantiles to the histogram's resolution: a minimum is
 * not a sum, so the consortium's extremes are bounded by the first and last non-empty bins instead of revealed.
 */
export const statisticsPlanSchema = z
  .object({
    features: z.array(z.string().min(1).max(100)).min(1).max(4_096),
    histogram: z
      .object({
        bins: z.int().min(1).max(4_096),
        min: z.number(),
        max: z.number(),
      })
      .strict()
      .refine((h) => h.max > h.min, { message: 'histogram.max must be greater than histogram.min', path: ['max'] }),
  })
  .strict()
  .refine((plan) => new Set(plan.features).size === plan.features.length, { message: 'features must be unique', path: ['features'] });

export type StatisticsPlan = z.output<typeof statisticsPlanSchema>;

/** Values a feature takes in the vector: count, shifted sum, shifted sum of squares, then the bins. */
const fixedSlots = 3;

export function statisticsVectorLength(plan: StatisticsPlan): number {
  return plan.features.length * (fixedSlots + plan.histogram.bins);
}

/** The histogram bin of a value: values below min go to the first bin, values above max to the last (clamped). */
function binOf(value: number, plan: StatisticsPlan): number {
  const { bins, min, max } = plan.histogram;
  const at = Math.floor(((value - min) / (max - min)) * bins);
  return Math.min(bins - 1, Math.max(0, at));
}

/**
 * One site's vector: `columns[f]` holds feature f's values at this site (every value finite). Throws RangeError
 * naming the feature for a count below `minCount` (a statistic of too few images says too much about each) or a
 * non-finite value.
 */
export function encodeSiteStatistics(plan: StatisticsPlan, columns: ReadonlyArray<ArrayLike<number>>, minCount = 1): Float64Array {
  if (columns.length !== plan.features.length) throw new RangeError(`statistics need one column per feature (${plan.features.length}), got ${columns.length}`);
  const centre = (plan.histogram.min + plan.histogram.max) / 2;
  const stride = fixedSlots + plan.histogram.bins;
  const out = new Float64Array(statisticsVectorLength(plan));
  columns.forEach((values, f) => {
    const name = plan.features[f] as string;
    if (values.length < minCount) throw new RangeError(`feature ${name}: ${values.length} values, fewer than the ${minCount} this site shares a statistic of`);
    const base = f * stride;
    let sum = 0;
    let squares = 0;
    for (let i = 0; i < values.length; i++) {
      const x = values[i] as number;
      if (!Number.isFinite(x)) throw new RangeError(`feature ${name}: value ${i} is ${x}; statistics need finite values`);
      const d = x - centre;
      sum += d;
      squares += d * d;
      const slot = base + fixedSlots + binOf(x, plan);
      out[slot] = (out[slot] as number) + 1;
    }
    out[base] = values.length;
    out[base + 1] = sum;
    out[base + 2] = squares;
  });
  return out;
}

/** The consortium's figures for one feature, from the summed vectors. */
export interface FeatureStatistics {
  feature: string;
  count: number;
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

/**
 * Decodes the sum of sites' vectors. Counts arrive through CKKS with errors near 1e-8, so they are rounded to
 * integers (an error above 0.01 means the vector is not a sum of encodings: refused). `quantiles` are read off the
 * merged histogram, interpolating linearly within a bin.
 */
export function decodeConsortiumStatistics(plan: StatisticsPlan, sum: ArrayLike<number>, quantiles: readonly number[] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]): FeatureStatistics[] {
  if (sum.length !== statisticsVectorLength(plan)) throw new RangeError(`a statistics sum for this plan has ${statisticsVectorLength(plan)} values, got ${sum.length}`);
  const { bins, min, max } = plan.histogram;
  const width = (max - min) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => min + i * width);
  const centre = (min + max) / 2;
  const stride = fixedSlots + bins;
  const whole = (value: number, what: string): number => {
    const rounded = Math.round(value);
    if (Math.abs(value - rounded) > 0.01 || rounded < 0) throw new RangeError(`${what} is ${value}, not a count: the vector is not a sum of site statistics`);
    return rounded;
  };
  return plan.features.map((feature, f) => {
    const base = f * stride;
    const count = whole(sum[base] as number, `feature ${feature}'s count`);
    const counts = Array.from({ length: bins }, (_, b) => whole(sum[base + fixedSlots + b] as number, `feature ${feature}'s bin ${b}`));
    const binned = counts.reduce((a, c) => a + c, 0);
    if (binned !== count) throw new RangeError(`feature ${feature}: its bins hold ${binned} values but its count is ${count}`);
    const shifted = (sum[base + 1] as number) / count;
    const variance = count > 1 ? Math.max(0, ((sum[base + 2] as number) - count * shifted * shifted) / (count - 1)) : Number.NaN;
    const first = counts.findIndex((c) => c > 0);
    const last = bins - 1 - [...counts].reverse().findIndex((c) => c > 0);
    return {
      feature,
      count,
      mean: centre + shifted,
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
