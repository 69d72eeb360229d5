import { describe, expect, it } from 'vitest';
import type { GroupedImages } from '../data/dataset/load.js';
import { selectImages, splitTrainValidation } from './split.js';

/** One 1x1 pixel per image whose value is its index, so the split can be traced back; one group per image unless given. */
function images(labels: number[], groups: number[] = labels.map((_, i) => i)): GroupedImages {
  return {
    images: Float32Array.from(labels.map((_, i) => i)),
    labels: Int32Array.from(labels),
    count: labels.length,
    height: 1,
    width: 1,
    channels: 1,
    groups: Uint32Array.from(groups),
  };
}

/** A site where each patient has 1-5 images and mostly one label, like a real archive; patient p has group id 1000 + p * 7919. */
function patientSite(patients: number, seed: number): { data: GroupedImages; patientOf: number[] } {
  let state = seed;
  const next = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
  const labels: number[] = [];
  const groups: number[] = [];
  const patientOf: number[] = [];
  for (let p = 0; p < patients; p++) {
    const label = next() < 0.3 ? 1 : next() < 0.15 ? 2 : 0;
    const count = 1 + Math.floor(next() * 5);
    for (let k = 0; k < count; k++) {
      // Now and then a follow-up with another finding: groups are not always pure.
      labels.push(next() < 0.1 ? (label + 1) % 3 : label);
      groups.push(1000 + p * 7919);
      patientOf.push(p);
    }
  }
  return { data: images(labels, groups), patientOf };
}

const imageIds = (data: GroupedImages): number[] => Array.from(data.images);

/** The same images in another order (pixel values still name the original index). */
function permuted(data: GroupedImages, seed: number): GroupedImages {
  const order = Array.from({ length: data.count }, (_, i) => i);
  let state = seed;
  for (let i = order.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return selectImages(data, order);
}

describe('train/validation split', () => {
  const data = images([...Array<number>(30).fill(0), ...Array<number>(10).fill(1)]);

  it('holds out a stratified share, disjoint from training, the same way every time', () => {
    const a = splitTrainValidation(data, 0.2, 7);
    const b = splitTrainValidation(data, 0.2, 7);
    expect(imageIds(a.validation)).toEqual(imageIds(b.validation));
    expect(a.validation.count).toBe(8);
    expect(a.train.count).toBe(32);
    expect(Array.from(a.validation.labels).filter((l) => l === 1)).toHaveLength(2);
    const train = new Set(a.train.images);
    expect(imageIds(a.validation).some((v) => train.has(v))).toBe(false);
    // Labels and groups travel with their images.
    a.train.images.forEach((v, i) => expect(a.train.labels[i]).toBe(data.labels[v]));
    a.validation.images.forEach((v, i) => expect(a.validation.groups[i]).toBe(data.groups[v]));
  });

  it('changes with the seed and allows no validation set', () => {
    const a = splitTrainValidation(data, 0.2, 7);
    const c = splitTrainValidation(data, 0.2, 8);
    expect(imageIds(a.validation)).not.toEqual(imageIds(c.validation));
    expect(splitTrainValidation(data, 0, 7).validation.count).toBe(0);
  });

  it('never puts one patient on both sides, and keeps the fraction and every class', () => {
    const { data: site, patientOf } = patientSite(120, 3);
    for (const seed of [1, 2, 3, 42, 0xdeadbeef]) {
      const { train, validation } = splitTrainValidation(site, 0.2, seed);
      expect(train.count + validation.count).toBe(site.count);
      const trainPatients = new Set(imageIds(train).map((i) => patientOf[i]));
      const validationPatients = new Set(imageIds(validation).map((i) => patientOf[i]));
      expect([...validationPatients].filter((p) => trainPatients.has(p))).toEqual([]);
      expect(Math.abs(validation.count / site.count - 0.2)).toBeLessThan(0.03);
      expect(new Set(validation.labels)).toEqual(new Set(site.labels));
    }
  });

  it('is the same split whatever order the images come in', () => {
    const { data: site } = patientSite(60, 11);
    const reference = splitTrainValidation(site, 0.25, 5);
    const sorted = (d: GroupedImages): number[] => imageIds(d).sort((a, b) => a - b);
    for (const order of [1, 2, 3]) {
      const shuffled = permuted(site, order);
      expect(imageIds(shuffled)).not.toEqual(imageIds(site));
      const again = splitTrainValidation(shuffled, 0.25, 5);
      expect(sorted(again.validation)).toEqual(sorted(reference.validation));
      expect(sorted(again.train)).toEqual(sorted(reference.train));
    }
  });

  it('validates a small class whose patients each have several images, and keeps a lone patient for training', () => {
    // Class 1: two patients of 4 images, too big to fit round(8 x 0.2) = 2; the smaller share is held out anyway.
    const small = images([...Array<number>(20).fill(0), ...Array<number>(8).fill(1), 2, 2, 2], [
      ...Array.from({ length: 20 }, (_, i) => i),
      ...Array<number>(4).fill(100),
      ...Array<number>(4).fill(101),
      200,
      200,
      200,
    ]);
    const { train, validation } = splitTrainValidation(small, 0.2, 9);
    expect(Array.from(validation.labels).filter((l) => l === 1)).toHaveLength(4);
    expect(Array.from(train.labels).filter((l) => l === 1)).toHaveLength(4);
    expect(Array.from(validation.labels).filter((l) => l === 0)).toHaveLength(4);
    // Class 2 is one patient: holding it out would leave nothing of that class to learn from.
    expect(Array.from(train.labels).filter((l) => l === 2)).toHaveLength(3);
  });

  it('keeps each image\'s mask with it on both sides of the split', () => {
    const masked = { ...data, height: 1, width: 1, masks: Uint8Array.from(data.labels, (l, i) => (l === 1 ? 1 + (i % 2) : 0)) };
    const { train, validation } = splitTrainValidation(masked, 0.25, 7);
    for (const side of [train, validation]) {
      expect(side.masks).toHaveLength(side.count);
      // Pixel values name the original image; its mask travels with it.
      expect(Array.from(side.masks ?? [])).toEqual(Array.from(side.images, (i) => masked.masks[i]));
    }
  });

  it('refuses groups that do not match the images', () => {
    expect(() => splitTrainValidation({ ...data, groups: new Uint32Array(3) }, 0.2, 7)).toThrow(/groups has 3 entries for 40 images/);
  });
});
