import { createPrng } from '@federa/shared';
import type { LabeledImages } from './types.js';

/**
 * A trivially learnable labelled set for self-tests, benchmarks and demos without patient data: odd-indexed
 * images (label 1) contain a bright square of random size and place on dim noise, even-indexed ones (label 0)
 * only the noise. Deterministic from `seed`.
 */
export function brightSquareImages(count: number, size: number, seed: number, channels = 1): LabeledImages {
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(size) || size < 8) {
    throw new RangeError(`brightSquareImages needs count >= 1 and size >= 8, got ${count} and ${size}`);
  }
  const prng = createPrng(seed);
  const images = new Float32Array(count * size * size * channels);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const label = n % 2;
    labels[n] = label;
    const base = n * size * size * channels;
    for (let i = 0; i < size * size * channels; i++) images[base + i] = prng.nextFloat() * 0.3;
    if (label === 1) {
      const side = Math.max(3, Math.floor(size / 8) + Math.floor(prng.nextFloat() * (size / 8)));
      const top = Math.floor(prng.nextFloat() * (size - side));
      const left = Math.floor(prng.nextFloat() * (size - side));
      for (let y = top; y < top + side; y++) {
        for (let x = left; x < left + side; x++) {
          for (let c = 0; c < channels; c++) images[base + (y * size + x) * channels + c] = 0.9 + prng.nextFloat() * 0.1;
        }
      }
    }
  }
  return { images, labels, count, height: size, width: size, channels };
}
