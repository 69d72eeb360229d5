import { architectureTask, evaluationCounts, mergeSegmentationCounts, segmentationCounts, type EvaluationCounts, type SegmentationCounts, type StudyDefinition } from '@federa/shared';
import { predictProbabilities } from '../train/index.js';
import type { PreparedData } from './site-data.js';
import { selectImages } from './split.js';

/**
 * How a global model scores on this site's held-out images, as counts only: a classifier's confusion matrix and score
 * histograms, or a segmentation model's pixel counts per class and per-image Dice histograms.
 */
export async function heldOutCounts(spec: StudyDefinition['model'], weights: Float32Array, validation: PreparedData['validation'], bins: number): Promise<EvaluationCounts | SegmentationCounts> {
  if (architectureTask(spec.architecture) === 'segmentation') return segmentationEvaluation(spec, weights, validation);
  const probabilities = validation.count > 0 ? await predictProbabilities(spec, weights, validation) : new Float64Array(0);
  return evaluationCounts(probabilities, validation.labels, spec.classes, bins);
}

/**
 * A segmentation model's counts on the held-out images (pixel counts per class, per-image Dice histograms), scored a
 * few images at a time: the per-pixel probabilities of a whole split would take classes x 8 bytes per pixel.
 */
async function segmentationEvaluation(spec: StudyDefinition['model'], weights: Float32Array, validation: PreparedData['validation']): Promise<SegmentationCounts> {
  const pixels = validation.height * validation.width;
  const masks = validation.masks;
  if (!masks) throw new Error('segmentation data without masks: the held-out split lost them');
  let counts = segmentationCounts(new Float64Array(0), new Uint8Array(0), spec.classes, pixels);
  const chunk = 16;
  for (let start = 0; start < validation.count; start += chunk) {
    const indices = Array.from({ length: Math.min(chunk, validation.count - start) }, (_, i) => start + i);
    const part = selectImages(validation, indices);
    const probabilities = await predictProbabilities(spec, weights, part);
    counts = mergeSegmentationCounts(counts, segmentationCounts(probabilities, part.masks ?? new Uint8Array(0), spec.classes, pixels));
  }
  return counts;
}

