import { describe, expect, it } from 'vitest';
import type { LabeledImages } from '../data/index.js';
import { splitTrainValidation } from './split.js';

function images(labels: number[]): LabeledImages {
  // One 1x1 pixel per image whose value is its index, so the split can be traced back.
  return {
    images: Float32Array.from(labels.map((_, i) => i)),
    labels: Int32Array.from(labels),
    count: labels.length,
    height: 1,
    width: 1,
    channels: 1,
  };
}

describe('train/validation split', () => {
  const data = images([...Array(30).fill(0), ...Array(10).fill(1)]);

  it('holds out a stratified share, disjoint from training, the same way every time', () => {
    const a = splitTrainValidation(data, 0.2, 7);
    const b = splitTrainValidation(data, 0.2, 7);
    expect(Array.from(a.validation.images)).toEqual(Array.from(b.validation.images));
    expect(a.validation.count).toBe(8);
    expect(a.train.count).toBe(32);
    expect(Array.from(a.validation.labels).filter((l) => l === 1)).toHaveLength(2);
    const train = new Set(a.train.images);
    expect(Array.from(a.validation.images).some((v) => train.has(v))).toBe(false);
    // Labels travel with their images.
    a.train.images.forEach((v, i) => expect(a.train.labels[i]).toBe(data.labels[v]));
  });

  it('changes with the seed and allows no validation set', () => {
    const a = splitTrainValidation(data, 0.2, 7);
    const c = splitTrainValidation(data, 0.2, 8);
    expect(Array.from(a.validation.images)).not.toEqual(Array.from(c.validation.images));
    expect(splitTrainValidation(data, 0, 7).validation.count).toBe(0);
  });
});
