import { describe, it, expect, vi, afterEach } from 'vitest';
import { addGaussianNoise, secureGaussian, secureUniform } from './index.js';

// Statistical bounds are 6 standard errors wide: a correct sampler fails one about once in 10^9 runs.
const N = 200_000;
const SIGMAS = 6;

function moments(xs: ArrayLike<number>): { mean: number; variance: number } {
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += xs[i] as number;
  const mean = sum / xs.length;
  let sq = 0;
  for (let i = 0; i < xs.length; i++) sq += ((xs[i] as number) - mean) ** 2;
  return { mean, variance: sq / (xs.length - 1) };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('secureGaussian', () => {
  it('has mean 0 and variance stdDev^2 on 200k draws', () => {
    const sd = 2.5;
    const xs = secureGaussian(N, sd);
    expect(xs).toHaveLength(N);
    const { mean, variance } = moments(xs);
    expect(Math.abs(mean)).toBeLessThan((SIGMAS * sd) / Math.sqrt(N));
    // Var of the sample variance of a normal is 2 sd^4 / (n - 1).
    expect(Math.abs(variance - sd * sd)).toBeLessThan(SIGMAS * sd * sd * Math.sqrt(2 / (N - 1)));
    // Shape, not just moments: P(|Z| < 1) = 0.682689...
    let inside = 0;
    for (const x of xs) if (Math.abs(x) < sd) inside++;
    const p = 0.6826894921370859;
    expect(Math.abs(inside / N - p)).toBeLessThan(SIGMAS * Math.sqrt((p * (1 - p)) / N));
  });

  it('gives different draws on every call and never uses Math.random', () => {
    const spy = vi.spyOn(Math, 'random').mockImplementation(() => {
      throw new Error('Math.random must not be used for DP noise');
    });
    const a = secureGaussian(1000, 1);
    const b = secureGaussian(1000, 1);
    expect(spy).not.toHaveBeenCalled();
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
    expect(same).toBe(0);
  });

  it('handles odd counts, zero count and zero stdDev', () => {
    const odd = secureGaussian(7, 1);
    expect(odd).toHaveLength(7);
    expect(Array.from(odd).every(Number.isFinite)).toBe(true);
    expect(odd[6]).not.toBe(0);
    expect(secureGaussian(0, 1)).toHaveLength(0);
    expect(Array.from(secureGaussian(5, 0)).every((x) => x === 0)).toBe(true);
  });

  it('refuses bad arguments with a RangeError naming them', () => {
    expect(() => secureGaussian(-1, 1)).toThrow(/count.*-1/);
    expect(() => secureGaussian(1.5, 1)).toThrow(RangeError);
    expect(() => secureGaussian(10, -1)).toThrow(/stdDev.*-1/);
    expect(() => secureGaussian(10, Number.NaN)).toThrow(RangeError);
    expect(() => secureGaussian(10, Infinity)).toThrow(RangeError);
  });
});

describe('addGaussianNoise', () => {
  it('adds N(0, sd^2) noise in place across several internal blocks', () => {
    const sd = 0.5;
    // Not a multiple of the block size, so the short last block is exercised too.
    const values = new Float32Array(N + 12_345).fill(3);
    addGaussianNoise(values, sd);
    const noise = Array.from(values, (v) => v - 3);
    const { mean, variance } = moments(noise);
    expect(Math.abs(mean)).toBeLessThan((SIGMAS * sd) / Math.sqrt(noise.length));
    expect(Math.abs(variance - sd * sd)).toBeLessThan(SIGMAS * sd * sd * Math.sqrt(2 / (noise.length - 1)));
    // Every block, including the last value, received noise.
    expect(values[values.length - 1]).not.toBe(3);
    const lastBlock = moments(noise.slice(-10_000));
    expect(Math.abs(lastBlock.variance - sd * sd)).toBeLessThan(SIGMAS * sd * sd * Math.sqrt(2 / 9_999));
  });

  it('leaves values alone at stdDev 0 and refuses a bad stdDev', () => {
    const v = Float32Array.from([1, 2, 3]);
    addGaussianNoise(v, 0);
    expect(Array.from(v)).toEqual([1, 2, 3]);
    expect(() => addGaussianNoise(v, -0.1)).toThrow(/stdDev/);
    addGaussianNoise(new Float32Array(0), 1);
  });
});

describe('secureUniform', () => {
  it('lies in (0, 1) with mean 1/2 and variance 1/12, and differs between calls', () => {
    const u = secureUniform(N);
    let min = 1;
    let max = 0;
    for (const x of u) {
      min = Math.min(min, x);
      max = Math.max(max, x);
    }
    expect(min).toBeGreaterThan(0);
    expect(max).toBeLessThan(1);
    const { mean, variance } = moments(u);
    expect(Math.abs(mean - 0.5)).toBeLessThan(SIGMAS * Math.sqrt(1 / 12 / N));
    // Var of the sample variance of U(0,1) is (1/80 - 1/144) / n.
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(SIGMAS * Math.sqrt((1 / 80 - 1 / 144) / N));
    const again = secureUniform(100);
    expect(Array.from(again)).not.toEqual(Array.from(u.subarray(0, 100)));
    expect(() => secureUniform(-2)).toThrow(/count/);
    expect(secureUniform(0)).toHaveLength(0);
  });
});
