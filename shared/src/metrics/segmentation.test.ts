import { describe, expect, it } from 'vitest';
import { mergeSegmentationCounts, segmentationCounts, segmentationCountsSchema, segmentationMetricsFromCounts } from './segmentation.js';

/** One-hot "probabilities" for predicted labels, so the arg-max is the prediction. */
const probsOf = (predicted: number[], classes: number): Float64Array => {
  const out = new Float64Array(predicted.length * classes);
  predicted.forEach((c, i) => (out[i * classes + c] = 1));
  return out;
};

describe('segmentation counts', () => {
  // Two 2x2 images, 2 classes. Image 0: truth [1,1,0,0], predicted [1,0,1,0]: tp1 1, fp1 1, fn1 1 -> Dice 0.5.
  // Image 1: truth all 0, predicted all 0 -> class 1 neither true nor predicted: Dice 1.
  const masks = [1, 1, 0, 0, 0, 0, 0, 0];
  const predicted = [1, 0, 1, 0, 0, 0, 0, 0];

  it('sums pixel counts per class and bins each image\'s Dice, nothing per image', () => {
    const counts = segmentationCounts(probsOf(predicted, 2), masks, 2, 4, 4);
    expect(counts).toEqual({ classes: 2, bins: 4, images: 2, tp: [5, 1], fp: [1, 1], fn: [1, 1], diceHistogram: [0, 0, 1, 1] });
    expect(segmentationCountsSchema.parse(counts)).toEqual(counts);
    const { perClass, mean } = segmentationMetricsFromCounts(counts);
    expect(perClass).toEqual([{ dice: 0.5, iou: 1 / 3, sensitivity: 0.5, precision: 0.5 }]);
    expect(mean.dice).toBe(0.5);
  });

  it('adds sites\' counts into the consortium\'s, whose Dice is the pooled one, not a mean of the sites\'', () => {
    const a = segmentationCounts(probsOf(predicted, 2), masks, 2, 4, 4);
    // Another site: one 2x2 image, all lesion, all found.
    const b = segmentationCounts(probsOf([1, 1, 1, 1], 2), [1, 1, 1, 1], 2, 4, 4);
    const total = mergeSegmentationCounts(a, b);
    expect(total.images).toBe(3);
    expect(segmentationMetricsFromCounts(total).perClass[0]!.dice).toBeCloseTo((2 * 5) / (2 * 5 + 1 + 1), 12);
    expect(() => mergeSegmentationCounts(a, segmentationCounts(probsOf(predicted, 2), masks, 2, 4, 5))).toThrow(/cannot add segmentation counts/);
  });

  it('refuses sizes that do not fit and mask values outside the classes', () => {
    expect(() => segmentationCounts(new Float64Array(8), [0, 0, 0], 2, 2)).toThrow(/not a whole number of images of 2/);
    expect(() => segmentationCounts(new Float64Array(6), [0, 0, 0, 0], 2, 2)).toThrow(/expected mask pixels \(4\) x classes \(2\)/);
    expect(() => segmentationCounts(new Float64Array(8), [0, 2, 0, 0], 2, 2)).toThrow(/mask pixel 1 is 2, not in \[0, 2\)/);
    expect(segmentationCountsSchema.safeParse({ classes: 2, bins: 2, images: 0, tp: [0], fp: [0, 0], fn: [0, 0], diceHistogram: [0, 0] }).success).toBe(false);
  });

  it('leaves a metric undefined where a class is never true nor predicted', () => {
    const counts = segmentationCounts(probsOf([0, 0, 0, 0], 3), [0, 0, 0, 0], 3, 4);
    const { perClass, mean } = segmentationMetricsFromCounts(counts);
    expect(perClass).toEqual([
      { dice: null, iou: null, sensitivity: null, precision: null },
      { dice: null, iou: null, sensitivity: null, precision: null },
    ]);
    expect(mean.dice).toBeNull();
  });
});
