import { describe, expect, it } from 'vitest';
import { createPrng } from '../model/prng.js';
import { decodeConsortiumStatistics, encodeSiteStatistics, histogramQuantile, statisticsPlanSchema, statisticsVectorLength } from './federated-statistics.js';

const col = (feature: string, bins: number, min: number, max: number, per = 1) => ({ feature, bins, min, max, per });
const plan = statisticsPlanSchema.parse({ columns: [col('intensity', 50, 0, 1), col('edge density', 50, 0, 1)] });

function column(count: number, seed: number, scale: number, offset: number): Float64Array {
  const prng = createPrng(seed);
  return Float64Array.from({ length: count }, () => offset + scale * prng.nextFloat() * prng.nextFloat());
}

function pooledMoments(values: Float64Array): { mean: number; variance: number } {
  const mean = values.reduce((a, v) => a + v, 0) / values.length;
  return { mean, variance: values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1) };
}

function exactQuantile(values: Float64Array, q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

describe('federated statistics', () => {
  const sites = [
    [column(300, 1, 0.8, 0.1), column(300, 2, 0.3, 0.0)],
    [column(500, 3, 0.5, 0.4), column(500, 4, 0.6, 0.2)],
    [column(40, 5, 0.2, 0.7), column(40, 6, 0.9, 0.05)],
  ];

  it('sums the sites\' vectors into the pooled count, mean and variance, exactly; min, max and quantiles to a bin', () => {
    const sum = new Float64Array(statisticsVectorLength(plan));
    for (const site of sites) encodeSiteStatistics(plan, site).forEach((v, i) => (sum[i] = (sum[i] as number) + v));
    // What a CKKS sum adds: tiny errors on every value, which the decoder rounds away from the counts.
    const prng = createPrng(9);
    sum.forEach((v, i) => (sum[i] = v + (prng.nextFloat() - 0.5) * 2e-8));
    const stats = decodeConsortiumStatistics(plan, sum, [0.1, 0.5, 0.9]);
    stats.forEach((s, f) => {
      const pooled = Float64Array.from(sites.flatMap((site) => [...(site[f] as Float64Array)]));
      const exact = pooledMoments(pooled);
      expect(s.feature).toBe(plan.columns[f]?.feature);
      expect(s.count).toBe(840);
      expect(s.mean).toBeCloseTo(exact.mean, 7);
      expect(s.variance).toBeCloseTo(exact.variance, 7);
      expect(s.minAtLeast).toBeLessThanOrEqual(Math.min(...pooled));
      expect(s.maxAtMost).toBeGreaterThanOrEqual(Math.max(...pooled));
      expect(s.maxAtMost - s.minAtLeast).toBeLessThanOrEqual(Math.max(...pooled) - Math.min(...pooled) + 2 / 50);
      for (const { q, value } of s.quantiles) expect(Math.abs(value - exactQuantile(pooled, q))).toBeLessThanOrEqual(1 / 50);
      expect(s.histogram.counts.reduce((a, c) => a + c, 0)).toBe(840);
    });
  });

  it('refuses a statistic of fewer values than the site\'s minimum, and values that are not finite', () => {
    expect(() => encodeSiteStatistics(plan, [column(4, 1, 1, 0), column(10, 1, 1, 0)], 5)).toThrow('feature intensity: 4 values, fewer than the 5 this site shares a statistic of');
    expect(() => encodeSiteStatistics(plan, [Float64Array.of(0.1, Number.NaN), column(2, 1, 1, 0)])).toThrow(/feature intensity: value 1 is NaN/);
    expect(() => encodeSiteStatistics(plan, [column(2, 1, 1, 0)])).toThrow(/one column of values per feature \(2\), got 1/);
  });

  it('refuses a vector that is not a sum of encodings', () => {
    const sum = encodeSiteStatistics(plan, sites[0]!);
    sum[0] = 300.4;
    expect(() => decodeConsortiumStatistics(plan, sum)).toThrow(/feature intensity's count is 300.4, not a count/);
    sum[0] = 301;
    expect(() => decodeConsortiumStatistics(plan, sum)).toThrow(/its bins hold 300 values but its count is 301/);
    expect(() => decodeConsortiumStatistics(plan, new Float64Array(3))).toThrow(/has 106 values, got 3/);
  });

  it('clamps values outside the histogram into its end bins, and reads quantiles linearly within a bin', () => {
    const small = statisticsPlanSchema.parse({ columns: [col('x', 4, 0, 4)] });
    const [s] = decodeConsortiumStatistics(small, encodeSiteStatistics(small, [Float64Array.of(-3, 0.5, 1.5, 1.6, 9)]), [0, 0.5, 1]);
    expect(s!.histogram.counts).toEqual([2, 2, 0, 1]);
    expect(s!.mean).toBeCloseTo((-3 + 0.5 + 1.5 + 1.6 + 9) / 5, 12);
    expect(histogramQuantile([2, 2, 0, 1], [0, 1, 2, 3, 4], 0.5)).toBeCloseTo(1.25, 12);
    expect(s!.quantiles.map((q) => q.value)).toEqual([0, 1.25, 4]);
    expect(() => histogramQuantile([1], [0, 1], 2)).toThrow(/within \[0, 1\], got 2/);
  });

  it('validates its plan', () => {
    expect(statisticsPlanSchema.safeParse({ columns: [col('a', 4, 0, 1), col('a', 4, 0, 1)] }).success).toBe(false);
    expect(statisticsPlanSchema.safeParse({ columns: [col('a', 4, 1, 1)] }).success).toBe(false);
    expect(statisticsPlanSchema.safeParse({ columns: [] }).success).toBe(false);
  });

  it('counts an intensity column in images of `per` pixels, keeping every slot within the encrypted sum\'s range, and decodes pixel counts', () => {
    // Two sites of 64x64 images: 3000 images' pixels would be 12 million counts, far past what one slot may hold.
    const pixels = 64 * 64;
    const intensity = statisticsPlanSchema.parse({ columns: [col('intensity', 16, 0, 1, pixels)] });
    const siteA = column(5 * pixels, 11, 1, 0);
    const siteB = column(3 * pixels, 12, 0.5, 0.25);
    const a = encodeSiteStatistics(intensity, [siteA]);
    expect(a[0]).toBe(5);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(5);
    const sum = a.map((v, i) => v + (encodeSiteStatistics(intensity, [siteB])[i] as number) + 1e-8);
    const [s] = decodeConsortiumStatistics(intensity, sum);
    const pooled = Float64Array.from([...siteA, ...siteB]);
    expect(s).toMatchObject({ count: 8 * pixels, units: 8 });
    expect(s!.mean).toBeCloseTo(pooledMoments(pooled).mean, 7);
    expect(s!.variance).toBeCloseTo(pooledMoments(pooled).variance, 7);
    expect(s!.histogram.counts.reduce((x, y) => x + y, 0)).toBe(8 * pixels);
    expect(() => encodeSiteStatistics(intensity, [siteA.subarray(1)])).toThrow(/feature intensity: 20479 values are not whole units of 4096/);
    expect(() => encodeSiteStatistics(intensity, [siteA], 6)).toThrow('feature intensity: 5 images, fewer than the 6 this site shares a statistic of');
  });

  it('refuses values so far outside their range that a slot would leave the encrypted sum\'s range', () => {
    const narrow = statisticsPlanSchema.parse({ columns: [col('x', 4, 0, 0.001)] });
    expect(() => encodeSiteStatistics(narrow, [Float64Array.of(5, 6)])).toThrow(/feature x: its sums reach .*, past the 10000 an encrypted sum holds per site: its values lie far outside \[0, 0.001\]; widen the range/);
  });
});
