import { createPrng } from '@federa/shared';
import type { LabeledImages } from '../data/index.js';

/**
 * Splits a site's images into training and validation sets, the same way every round (seeded by the
 * study), so validation images are never trained on. Stratified by label so a small site still validates
 * on every class it has.
 */
export function splitTrainValidation(
  data: LabeledImages,
  validationFraction: number,
  seed: number,
): { train: LabeledImages; validation: LabeledImages } {
  const byLabel = new Map<number, number[]>();
  for (let i = 0; i < data.count; i++) {
    const label = data.labels[i] as number;
    const list = byLabel.get(label) ?? [];
    list.push(i);
    byLabel.set(label, list);
  }
  const random = createPrng((seed ^ 0x5eed5eed) >>> 0);
  const train: number[] = [];
  const validation: number[] = [];
  for (const label of [...byLabel.keys()].sort((a, b) => a - b)) {
    const indices = byLabel.get(label) as number[];
    for (let i = indices.length - 1; i > 0; i--) {
      const j = Math.floor(random.nextFloat() * (i + 1));
      [indices[i], indices[j]] = [indices[j] as number, indices[i] as number];
    }
    const held = Math.round(indices.length * validationFraction);
    validation.push(...indices.slice(0, held));
    train.push(...indices.slice(held));
  }
  return { train: selectImages(data, train.sort((a, b) => a - b)), validation: selectImages(data, validation.sort((a, b) => a - b)) };
}

export function selectImages(data: LabeledImages, indices: number[]): LabeledImages {
  const size = data.height * data.width * data.channels;
  const images = new Float32Array(indices.length * size);
  const labels = new Int32Array(indices.length);
  indices.forEach((source, target) => {
    images.set(data.images.subarray(source * size, (source + 1) * size), target * size);
    labels[target] = data.labels[source] as number;
  });
  return { images, labels, count: indices.length, height: data.height, width: data.width, channels: data.channels };
}
