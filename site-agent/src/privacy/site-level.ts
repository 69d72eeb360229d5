import { addGaussianNoise } from '@federa/shared';

/**
 * Site-level DP for the aggregate: the round's update (trained − base) clipped to L2 norm `clipNorm` over all weights,
 * plus Gaussian noise of standard deviation noiseMultiplier·clipNorm/√minSites on every weight. A sum of at least
 * minSites such updates carries noise of standard deviation noiseMultiplier·clipNorm, calibrated to a sensitivity
 * of clipNorm (one site's clipped update). Returns the weights base + noisy update, and the update's norm before
 * clipping (for the log).
 */
export function privatizeUpdate(
  base: Float32Array,
  trained: Float32Array,
  settings: { clipNorm: number; noiseMultiplier: number; minSites: number },
): { weights: Float32Array; norm: number } {
  if (base.length !== trained.length) throw new RangeError(`trained weights have ${trained.length} values, the base model ${base.length}`);
  const update = new Float32Array(base.length);
  let sq = 0;
  for (let i = 0; i < base.length; i++) {
    const d = (trained[i] as number) - (base[i] as number);
    update[i] = d;
    sq += d * d;
  }
  const norm = Math.sqrt(sq);
  const scale = Math.min(1, settings.clipNorm / (norm + 1e-12));
  for (let i = 0; i < update.length; i++) update[i] = (update[i] as number) * scale;
  addGaussianNoise(update, (settings.noiseMultiplier * settings.clipNorm) / Math.sqrt(settings.minSites));
  const weights = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) weights[i] = (base[i] as number) + (update[i] as number);
  return { weights, norm };
}
