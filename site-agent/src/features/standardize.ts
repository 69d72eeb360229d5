/**
 * Feature standardisation z = (x - mean) / std with the consortium's statistics. Each site can contribute
 * `featureSums` (count, sums, sums of squares: plain sums, so they add up through the encrypted sum like model
 * updates) and every site then builds the same Standardizer from the total; `Standardizer.fit` does the same
 * from local data alone. Variances are population variances (divide by N, as scikit-learn's StandardScaler).
 */
import { FeatureInputError } from './region.js';

export interface FeatureSums {
  count: number;
  sums: Float64Array;
  sumsOfSquares: Float64Array;
}

/** Per-column sums of a row-major rows x columns matrix (all values must be finite). */
export function featureSums(matrix: Float64Array, columns: number): FeatureSums {
  const rows = rowCount(matrix, columns);
  const sums = new Float64Array(columns);
  const sumsOfSquares = new Float64Array(columns);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      const v = finiteAt(matrix, r, c, columns);
      sums[c]! += v;
      sumsOfSquares[c]! += v * v;
    }
  }
  return { count: rows, sums, sumsOfSquares };
}

/** Element-wise total of several sites' sums. */
export function addFeatureSums(parts: readonly FeatureSums[]): FeatureSums {
  const first = parts[0];
  if (first === undefined) throw new FeatureInputError('addFeatureSums needs at least one part');
  const out: FeatureSums = { count: 0, sums: new Float64Array(first.sums.length), sumsOfSquares: new Float64Array(first.sums.length) };
  for (const part of parts) {
    if (part.sums.length !== out.sums.length || part.sumsOfSquares.length !== out.sums.length) {
      throw new FeatureInputError(`cannot add sums over ${part.sums.length} features to sums over ${out.sums.length}`);
    }
    out.count += part.count;
    for (let c = 0; c < out.sums.length; c++) {
      out.sums[c]! += part.sums[c]!;
      out.sumsOfSquares[c]! += part.sumsOfSquares[c]!;
    }
  }
  return out;
}

export class Standardizer {
  readonly mean: Float64Array;
  /** Divisors actually used: a feature whose spread is zero or at rounding level is divided by 1. */
  readonly scale: Float64Array;

  /** `std` per feature (>= 0); a constant feature (std 0) only gets centred, so it becomes 0 everywhere. */
  constructor(mean: ArrayLike<number>, std: ArrayLike<number>) {
    if (mean.length !== std.length || mean.length === 0) {
      throw new FeatureInputError(`mean has ${mean.length} values and std ${std.length}; they must match and be non-empty`);
    }
    this.mean = Float64Array.from(mean);
    this.scale = new Float64Array(std.length);
    for (let c = 0; c < std.length; c++) {
      const s = std[c]!;
      if (!Number.isFinite(this.mean[c]!) || !Number.isFinite(s) || s < 0) {
        throw new FeatureInputError(`feature ${c}: mean ${this.mean[c]} and std ${s} must be finite, std >= 0`);
      }
      // Relative floor: a spread at rounding level is no spread (the sum-of-squares variance leaves such noise).
      this.scale[c] = s > 1e-12 * Math.max(1, Math.abs(this.mean[c]!)) ? s : 1;
    }
  }

  get features(): number {
    return this.mean.length;
  }

  /** From federated means and (population) variances. */
  static fromVariance(mean: ArrayLike<number>, variance: ArrayLike<number>): Standardizer {
    return new Standardizer(mean, Array.from(variance, (v) => Math.sqrt(Math.max(0, v))));
  }

  /** From (summed) FeatureSums: mean = S/N, variance = max(0, Q/N - mean²). */
  static fromSums(sums: FeatureSums): Standardizer {
    if (!Number.isInteger(sums.count) || sums.count < 1) throw new FeatureInputError(`sums cover ${sums.count} rows; need at least one`);
    const mean = Array.from(sums.sums, (s) => s / sums.count);
    const variance = Array.from(sums.sumsOfSquares, (q, c) => q / sums.count - mean[c]! * mean[c]!);
    return Standardizer.fromVariance(mean, variance);
  }

  /** From local data only (two-pass mean and variance). */
  static fit(matrix: Float64Array, columns: number): Standardizer {
    const rows = rowCount(matrix, columns);
    if (rows === 0) throw new FeatureInputError('cannot fit a standardizer to no rows');
    const mean = new Float64Array(columns);
    for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) mean[c]! += finiteAt(matrix, r, c, columns);
    for (let c = 0; c < columns; c++) mean[c]! /= rows;
    const variance = new Float64Array(columns);
    for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) variance[c]! += (matrix[r * columns + c]! - mean[c]!) ** 2;
    for (let c = 0; c < columns; c++) variance[c]! /= rows;
    return Standardizer.fromVariance(mean, variance);
  }

  /** Standardised copy of a row-major rows x features matrix; refuses non-finite values. */
  transform(matrix: Float64Array): Float64Array {
    const columns = this.features;
    const rows = rowCount(matrix, columns);
    const out = new Float64Array(matrix.length);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) out[r * columns + c] = (finiteAt(matrix, r, c, columns) - this.mean[c]!) / this.scale[c]!;
    }
    return out;
  }
}

function rowCount(matrix: Float64Array, columns: number): number {
  if (!Number.isInteger(columns) || columns < 1) throw new FeatureInputError(`columns must be an integer >= 1, got ${columns}`);
  if (matrix.length % columns !== 0) throw new FeatureInputError(`a matrix of ${matrix.length} values is not a whole number of ${columns}-feature rows`);
  return matrix.length / columns;
}

function finiteAt(matrix: Float64Array, row: number, column: number, columns: number): number {
  const v = matrix[row * columns + column]!;
  if (!Number.isFinite(v)) throw new FeatureInputError(`feature ${column} of row ${row} is ${v}; impute or drop undefined features first`);
  return v;
}
