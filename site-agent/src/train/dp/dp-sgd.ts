import { addGaussianNoise, secureUniform } from '@federa/shared';

/** Sample-level DP-SGD settings for one training (see TrainOptions.privacy). */
export interface DpSgdSettings {
  /** L2 norm each example's gradient is clipped to (> 0). */
  clipNorm: number;
  /** Noise standard deviation as a multiple of clipNorm (> 0). */
  noiseMultiplier: number;
}

/**
 * A Poisson sample of [0, count): each index independently with probability `rate`, from a cryptographically secure
 * source. The accountant's privacy amplification assumes nobody can tell which images a step used, so the choice must
 * not be reproducible from the training seed the way shuffling is.
 */
export function poissonSample(count: number, rate: number): Int32Array {
  if (!(rate >= 0 && rate <= 1)) throw new RangeError(`sampling rate must be in [0, 1], got ${rate}`);
  const draws = secureUniform(count);
  const chosen: number[] = [];
  for (let i = 0; i < count; i++) if ((draws[i] as number) < rate) chosen.push(i);
  return Int32Array.from(chosen);
}

/**
 * Batch buffer size for Poisson batches of mean `batchSize`: the mean plus six standard deviations, so a larger
 * sample (odds below 1e-9 a step) is rare; it is then trained in two parts rather than truncated, which the privacy
 * analysis does not cover.
 */
export function poissonCapacity(batchSize: number, count: number): number {
  const rate = Math.min(1, batchSize / count);
  return Math.min(count, Math.ceil(batchSize + 6 * Math.sqrt(count * rate * (1 - rate))) + 1);
}

/**
 * Turns the step's sum of clipped per-example gradients into its private mean gradient, in place: Gaussian noise of
 * standard deviation noiseMultiplier·clipNorm on every coordinate, then division by the expected batch size (not the
 * sampled one, whose size itself depends on who is in the data).
 */
export function privatizeGradient(sum: Float32Array, settings: DpSgdSettings, expectedBatch: number): void {
  addGaussianNoise(sum, settings.noiseMultiplier * settings.clipNorm);
  for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) / expectedBatch;
}

export function dpSgdProblems(settings: DpSgdSettings): string[] {
  const problems: string[] = [];
  if (!Number.isFinite(settings.clipNorm) || settings.clipNorm <= 0) problems.push(`privacy.clipNorm must be a finite number > 0, got ${settings.clipNorm}`);
  if (!Number.isFinite(settings.noiseMultiplier) || settings.noiseMultiplier <= 0) {
    problems.push(`privacy.noiseMultiplier must be a finite number > 0, got ${settings.noiseMultiplier}`);
  }
  return problems;
}
