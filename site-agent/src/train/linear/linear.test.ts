import {
  applyAggregate,
  initialWeights,
  largestChange,
  MAX_WEIGHT_CHANGE,
  metricsFromScores,
  parameterCount,
  parseModelSpec,
  UpdateAccumulator,
  weightedUpdateVector,
  type LinearArchitectureSpec,
  type ModelSpec,
} from '@federa/shared';
import { describe, expect, it } from 'vitest';
import { buildModel, brightSquareImages, evaluateModel, predictProbabilities, TrainingDataError, trainLocal, type LabeledImages, type TrainOptions } from '../index.js';
import { linearInputs } from './index.js';

const SIZE = 32;
const logistic: ModelSpec = { architecture: 'logistic-regression', inputSize: SIZE, channels: 1, classes: 2, seed: 1 };
const svm: ModelSpec = { ...logistic, architecture: 'linear-svm' };
const opts: TrainOptions = { epochs: 4, batchSize: 8, learningRate: 0.05, optimizer: 'adam', seed: 3 };

const sameBits = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

async function heldOutMetrics(spec: ModelSpec, weights: Float32Array, data: LabeledImages) {
  return metricsFromScores(await predictProbabilities(spec, weights, data), data.labels, spec.classes);
}

/**
 * Two halves of noise, one brighter: on the right for class 1, on the left for class 0. Each image is, up to noise, the
 * mirror of one of the other class, so no whole-image feature here tells the classes apart (all are mirror
 * invariant: histograms, gradient magnitudes, GLCM averaged over angles, rotation-invariant LBP), while the right half
 * alone does. Masks, as the site's loader hands them over: 1 on the right half (the structure), 0 on the left.
 */
function halves(count: number, seed: number): LabeledImages & { masks: Uint8Array } {
  const data = brightSquareImages(count, SIZE, seed);
  const masks = new Uint8Array(count * SIZE * SIZE);
  for (let n = 0; n < count; n++) {
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const i = n * SIZE * SIZE + y * SIZE + x;
        const right = x >= SIZE / 2;
        masks[i] = right ? 1 : 0;
        // brightSquareImages' noise in [0, 0.3), lifted on the class's bright side.
        data.images[i] = (data.images[i]! % 0.3) + (right === (data.labels[n] === 1) ? 0.4 : 0);
      }
    }
  }
  return { ...data, masks };
}

/** Three classes by grey level: dim, middle and bright noise. */
function greyLevels(count: number, seed: number): LabeledImages {
  const data = brightSquareImages(count, SIZE, seed);
  for (let n = 0; n < count; n++) {
    data.labels[n] = n % 3;
    for (let i = 0; i < SIZE * SIZE; i++) data.images[n * SIZE * SIZE + i] = (data.images[n * SIZE * SIZE + i]! % 0.3) + 0.3 * (n % 3);
  }
  return data;
}

describe('linear models on image features at the site', () => {
  it.each([logistic, svm])('$architecture learns bright square vs none: held-out accuracy and AUC 1', async (spec) => {
    const train = brightSquareImages(60, SIZE, 1);
    const heldOut = brightSquareImages(40, SIZE, 2);
    const start = initialWeights(spec);
    const result = await trainLocal(spec, start, train, opts);
    expect(result).toMatchObject({ samples: 60, steps: 4 * 8, backend: 'cpu', threads: 1, accuracy: 1 });
    expect(result.weights).toHaveLength(parameterCount(spec));
    const evaluation = await evaluateModel(spec, result.weights, train);
    expect(evaluation.loss).toBeCloseTo(result.loss, 6);
    expect(await heldOutMetrics(spec, result.weights, heldOut)).toMatchObject({ accuracy: 1, auc: 1 });
    const scores = await predictProbabilities(spec, result.weights, heldOut);
    expect(scores).toHaveLength(80);
    for (let r = 0; r < 40; r++) expect(scores[2 * r]! + scores[2 * r + 1]!).toBeCloseTo(1, 12);
  });

  it.each([logistic, svm])('$architecture separates three classes (softmax / one-vs-rest)', async (two) => {
    const spec = { ...two, classes: 3, features: ['first-order'] } as ModelSpec;
    const result = await trainLocal(spec, initialWeights(spec), greyLevels(60, 4), { ...opts, epochs: 8 });
    expect(result.weights).toHaveLength(19 * 3 + 3);
    expect(await heldOutMetrics(spec, result.weights, greyLevels(30, 5))).toMatchObject({ accuracy: 1 });
  });

  it('is deterministic for a seed, the seed changes the order, and steps = k epochs of batches trains as k epochs', async () => {
    const data = brightSquareImages(40, SIZE, 6);
    const start = initialWeights(svm);
    const a = await trainLocal(svm, start, data, { ...opts, epochs: 2 });
    const b = await trainLocal(svm, start, data, { ...opts, epochs: 2 });
    const c = await trainLocal(svm, start, data, { ...opts, epochs: 2, seed: 4 });
    const d = await trainLocal(svm, start, data, { batchSize: 8, learningRate: 0.05, optimizer: 'adam', seed: 3, steps: 10 });
    expect(sameBits(a.weights, b.weights)).toBe(true);
    expect(sameBits(a.weights, c.weights)).toBe(false);
    expect(sameBits(a.weights, d.weights)).toBe(true);
    expect(sameBits(start, initialWeights(svm))).toBe(true);
  });

  it("describes the pixels inside each mask with region: 'mask'", async () => {
    const masked = { ...logistic, region: 'mask', maskSegment: 'right half' } as ModelSpec;
    const train = halves(40, 7);
    const heldOut = halves(40, 8);
    const inside = await trainLocal(masked, initialWeights(masked), train, opts);
    expect((await heldOutMetrics(masked, inside.weights, heldOut)).accuracy).toBe(1);
    // The whole image cannot tell mirror images apart.
    const whole = await trainLocal(logistic, initialWeights(logistic), train, opts);
    expect((await heldOutMetrics(logistic, whole.weights, heldOut)).accuracy).toBeLessThan(0.8);
  });

  it('refuses what it cannot honour, naming the option', async () => {
    const data = brightSquareImages(8, SIZE, 9);
    const masked = { ...logistic, region: 'mask', maskSegment: 'lung' } as ModelSpec;
    await expect(trainLocal(masked, initialWeights(masked), data, opts)).rejects.toThrow(TrainingDataError);
    await expect(evaluateModel(masked, initialWeights(masked), data)).rejects.toThrow(
      "logistic-regression with region: 'mask' describes the pixels inside each image's lung mask, and this data has no masks",
    );
    const empty = { ...data, masks: new Uint8Array(8 * SIZE * SIZE) };
    await expect(trainLocal(masked, initialWeights(masked), empty, opts)).rejects.toThrow("logistic-regression features (region: 'mask'): image 0: the mask selects no pixel");
    const augmentation = { flips: true, rotationDegrees: 0, intensityJitter: 0 };
    await expect(trainLocal(logistic, initialWeights(logistic), data, { ...opts, augmentation })).rejects.toThrow(
      'augmentation is not supported for a logistic-regression model',
    );
    await expect(trainLocal(logistic, new Float32Array(5), data, opts)).rejects.toThrow("weight vector has 5 values but model 'logistic-regression' has 48 parameters");
    expect(() => buildModel(logistic)).toThrow('a logistic-regression model is a linear model on hand-crafted image features, not a TensorFlow.js network');
  });

  it('keeps every weight within the encrypted sum bound of the global model, whatever the learning rate', async () => {
    const data = brightSquareImages(40, SIZE, 10);
    const start = initialWeights(logistic);
    const result = await trainLocal(logistic, start, data, { ...opts, optimizer: 'sgd', learningRate: 50 });
    expect(largestChange(start, result.weights)).toBeLessThanOrEqual(MAX_WEIGHT_CHANGE);
    expect(largestChange(start, result.weights)).toBeGreaterThan(0.5);
  });

  it('honours FedProx, class weights and sample-level DP-SGD', async () => {
    const data = brightSquareImages(40, SIZE, 11);
    const start = initialWeights(logistic);
    const free = await trainLocal(logistic, start, data, opts);
    const held = await trainLocal(logistic, start, data, { ...opts, proximalMu: 50 });
    expect(largestChange(start, held.weights)).toBeLessThan(largestChange(start, free.weights));
    const weighted = await trainLocal(logistic, start, data, { ...opts, classWeights: [1, 3] });
    expect(sameBits(weighted.weights, free.weights)).toBe(false);
    const dp = await trainLocal(logistic, start, data, { ...opts, epochs: 8, privacy: { clipNorm: 1, noiseMultiplier: 0.5 } });
    expect(dp.privacy).toMatchObject({ sampleRate: 8 / 40, steps: 8 * 5, noiseMultiplier: 0.5, clipNorm: 1 });
    expect(dp.privacy!.clippedFraction).toBeGreaterThanOrEqual(0);
    expect(dp.privacy!.clippedFraction).toBeLessThanOrEqual(1);
    expect(dp.accuracy).toBeGreaterThan(0.75);
  });

  it('extracts each set once: later rounds reuse the features, changed pixels do not', async () => {
    const spec = parseModelSpec(logistic) as LinearArchitectureSpec;
    const data = brightSquareImages(12, SIZE, 12);
    const first = await linearInputs(spec, data);
    expect((await linearInputs(spec, data)).x).toBe(first.x);
    // A copy of the same pixels (a set loaded again) hits the cache too.
    expect((await linearInputs(spec, { ...data, images: data.images.slice() })).x).toBe(first.x);
    const changed = { ...data, images: data.images.map((v, i) => (i === 5 ? 1 - v : v)) };
    expect((await linearInputs(spec, changed)).x).not.toBe(first.x);
    // Consortium statistics are applied on top of the cached fixed scale: z = (scaled - mean) / std.
    const standardized = { ...spec, standardize: { mean: Array(47).fill(0.5), std: Array(47).fill(2) } };
    const z = (await linearInputs(standardized, data)).x;
    expect(z[3]).toBeCloseTo((first.x[3]! - 0.5) / 2, 12);
  });

  it('trains federated: FedAvg of two sites through the update vector classifies a held-out set', async () => {
    const sites = [brightSquareImages(30, SIZE, 21), brightSquareImages(50, SIZE, 22)];
    const heldOut = brightSquareImages(40, SIZE, 23);
    let global = initialWeights(logistic);
    for (let round = 1; round <= 3; round++) {
      const sum = new UpdateAccumulator(global.length + 1);
      const trained = [];
      for (const [i, site] of sites.entries()) {
        const result = await trainLocal(logistic, global, site, { ...opts, epochs: 1, seed: 100 * round + i });
        trained.push(result);
        sum.add(weightedUpdateVector(global, result.weights, result.samples));
      }
      const next = applyAggregate(global, sum.sum);
      for (let k = 0; k < next.length; k++) expect(next[k]).toBeCloseTo((30 * trained[0]!.weights[k]! + 50 * trained[1]!.weights[k]!) / 80, 5);
      global = next;
    }
    expect(await heldOutMetrics(logistic, global, heldOut)).toMatchObject({ accuracy: 1, auc: 1 });
  });
});
