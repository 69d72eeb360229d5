import { architectureTask, type ResolvedModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { segmentationLoss } from './parallel/segmentation-gradients.js';
import type { LabeledImages } from './types.js';

/**
 * Segmentation data beside classification's: LabeledImages whose `masks` hold each pixel's class index,
 * [count, height, width] on the preprocessed grid (0 background).
 */
export type SegmentationImages = LabeledImages & { masks?: Uint8Array | undefined };

export function isSegmentation(spec: ResolvedModelSpec): boolean {
  return architectureTask(spec.architecture) === 'segmentation';
}

/** What is wrong with a segmentation set's masks for this spec (empty when nothing is). */
export function maskProblems(spec: ResolvedModelSpec, data: SegmentationImages): string[] {
  const masks = data.masks;
  const expected = data.count * data.height * data.width;
  if (!masks) return [`a ${spec.architecture} model trains on masks: the data has none (one class index per pixel)`];
  if (masks.length !== expected) return [`masks hold ${masks.length} values but ${data.count} images of ${data.height}x${data.width} need ${expected}`];
  const bad = masks.findIndex((m) => m >= spec.classes);
  if (bad >= 0) {
    const pixels = data.height * data.width;
    return [`image ${Math.floor(bad / pixels)}'s mask has class ${masks[bad]} at pixel ${bad % pixels}, outside [0, ${spec.classes})`];
  }
  return [];
}

/** The masks of some images of `data` as an int32 tensor [n, height, width]. */
export function maskTensor(data: SegmentationImages, indices: Int32Array): tf.Tensor3D {
  const size = data.height * data.width;
  const out = new Int32Array(indices.length * size);
  const masks = data.masks as Uint8Array;
  indices.forEach((source, i) => out.set(masks.subarray(source * size, (source + 1) * size), i * size));
  return tf.tensor3d(out, [indices.length, data.height, data.width], 'int32');
}

/** [mean loss, summed per-image Dice, non-finite probability count] of one evaluation batch, as evaluationStats. */
export function segmentationEvaluationStats(probs: tf.Tensor4D, masks: tf.Tensor3D, classes: number): tf.Tensor1D {
  const { perImage, hardDice } = segmentationLoss(probs, masks, classes);
  const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(probs)), 'float32'));
  return tf.stack([tf.mean(perImage), tf.sum(hardDice), nonFinite]) as tf.Tensor1D;
}
