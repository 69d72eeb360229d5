import { initialWeights, metricsFromScores, parameterCount, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  TrainingDataError,
  TrainingDivergedError,
  brightSquareImages,
  evaluateModel,
  initBackend,
  predictProbabilities,
  trainLocal,
  type LabeledImages,
  type TrainOptions,
} from './index.js';

const spec64: ModelSpec = { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 1 };
// Small inputs keep the behavioural tests fast; the learning test uses the real 64x64 size.
const spec16: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 3 };
const opts: TrainOptions = { epochs: 2, batchSize: 8, learningRate: 0.05, seed: 11 };

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('trainLocal', () => {
  beforeAll(async () => {
    expect((await initBackend('auto')).name).toBe('wasm');
  });

  it('learns bright-square-present vs absent (64x64x1) well above chance within a few epochs on wasm', async () => {
    const train = brightSquareImages(200, 64, 1);
    const heldOut = brightSquareImages(100, 64, 2);
    const start = initialWeights(spec64);
    const before = await evaluateModel(spec64, start, heldOut);

    const result = await trainLocal(spec64, start, train, { epochs: 4, batchSize: 16, learningRate: 0.1, seed: 7 });
    const after = await evaluateModel(spec64, result.weights, heldOut);

    expect(result.backend).toBe('wasm');
    expect(result.samples).toBe(200);
    expect(result.weights.length).toBe(parameterCount(spec64));
    expect(result.seconds).toBeGreaterThan(0);
    expect(result.loss).toBeLessThan(before.loss);
    expect(result.accuracy).toBeGreaterThan(0.75);
    expect(after.accuracy).toBeGreaterThan(0.85);
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.samples).toBe(100);
  });

  it('is deterministic for a seed, and the seed changes the batch order', async () => {
    const data = brightSquareImages(40, 16, 5);
    const weights = initialWeights(spec16);
    const a = await trainLocal(spec16, weights, data, opts);
    const b = await trainLocal(spec16, weights, data, opts);
    const c = await trainLocal(spec16, weights, data, { ...opts, seed: 12 });
    expect(sameBits(a.weights, b.weights)).toBe(true);
    expect(a.loss).toBe(b.loss);
    expect(sameBits(a.weights, c.weights)).toBe(false);
    // The caller's vector is the round's base model and must stay untouched.
    expect(sameBits(weights, initialWeights(spec16))).toBe(true);
  });

  it('reports loss and accuracy over the last epoch', async () => {
    const data = brightSquareImages(20, 16, 6);
    const result = await trainLocal(spec16, initialWeights(spec16), data, { ...opts, epochs: 1, batchSize: 20, learningRate: 1e-9 });
    // One full batch with a negligible step: the reported figures are those of the starting weights.
    const reference = await evaluateModel(spec16, initialWeights(spec16), data);
    expect(result.loss).toBeCloseTo(reference.loss, 5);
    expect(result.accuracy).toBeCloseTo(reference.accuracy, 10);
  });

  describe('with a number of steps instead of epochs', () => {
    function distance(a: Float32Array, b: Float32Array): number {
      let sum = 0;
      for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
      return Math.sqrt(sum);
    }

    it('trains k x batches-per-epoch steps exactly like k epochs', async () => {
      // 40 images in batches of 8: 5 steps per epoch.
      const data = brightSquareImages(40, 16, 12);
      const weights = initialWeights(spec16);
      const byEpochs = await trainLocal(spec16, weights, data, { ...opts, epochs: 2 });
      const { epochs: _epochs, ...base } = opts;
      const bySteps = await trainLocal(spec16, weights, data, { ...base, steps: 10 });
      expect(sameBits(bySteps.weights, byEpochs.weights)).toBe(true);
      expect([bySteps.loss, bySteps.accuracy, bySteps.steps]).toEqual([byEpochs.loss, byEpochs.accuracy, 10]);
      // A partial epoch: the 7th step continues into a freshly shuffled second epoch.
      const partial = await trainLocal(spec16, weights, data, { ...base, steps: 7 });
      expect(partial.steps).toBe(7);
      // The FedAvg weight is the number of local images, however many steps were taken.
      expect(partial.samples).toBe(40);
      expect(sameBits(partial.weights, byEpochs.weights)).toBe(false);
    });

    it('takes exactly N optimiser steps: N full-batch steps equal N one-step calls', async () => {
      const data = brightSquareImages(24, 16, 13);
      // SGD keeps no state between steps, so one call per step is the same training as one call of N steps.
      const sgd = { batchSize: 24, learningRate: 0.2, optimizer: 'sgd' as const, seed: 3 };
      let manual = initialWeights(spec16);
      const manualAfter: Float32Array[] = [];
      for (let step = 0; step < 4; step++) {
        manual = (await trainLocal(spec16, manual, data, { ...sgd, epochs: 1 })).weights;
        manualAfter.push(manual);
      }
      const three = await trainLocal(spec16, initialWeights(spec16), data, { ...sgd, steps: 3 });
      const stepSize = distance(manualAfter[2]!, manualAfter[1]!);
      expect(stepSize).toBeGreaterThan(1e-3);
      // Full batches in another order sum in another order: equal up to float rounding, far below one step.
      expect(distance(three.weights, manualAfter[2]!)).toBeLessThan(stepSize / 100);
      expect(distance(three.weights, manualAfter[1]!)).toBeGreaterThan(stepSize / 2);
      expect(distance(three.weights, manualAfter[3]!)).toBeGreaterThan(stepSize / 2);
    });

    it('reports loss and accuracy over the last window of steps', async () => {
      const data = brightSquareImages(20, 16, 14);
      const start = initialWeights(spec16);
      // Full batches with a negligible step: every step measures the starting weights.
      const result = await trainLocal(spec16, start, data, { batchSize: 20, learningRate: 1e-9, seed: 1, steps: 3 });
      const reference = await evaluateModel(spec16, start, data);
      expect(result.loss).toBeCloseTo(reference.loss, 5);
      expect(result.accuracy).toBeCloseTo(reference.accuracy, 10);
    });

    it('refuses both, neither, or a bad number of steps', async () => {
      const data = brightSquareImages(4, 16, 15);
      const { epochs: _epochs, ...base } = opts;
      const w = initialWeights(spec16);
      await expect(trainLocal(spec16, w, data, { ...opts, steps: 5 })).rejects.toThrow(/epochs and steps are alternatives: give exactly one, not both/);
      await expect(trainLocal(spec16, w, data, base)).rejects.toThrow(/give exactly one of epochs or steps/);
      await expect(trainLocal(spec16, w, data, { ...base, steps: 0 })).rejects.toThrow(/steps must be an integer >= 1, got 0/);
      await expect(trainLocal(spec16, w, data, { ...base, steps: 1.5 })).rejects.toThrow(RangeError);
    });
  });

  it('predicts class probabilities whose arg-max scores what evaluateModel scores', async () => {
    // More images than one forward batch (64), so the batches must be stitched in order.
    const data = brightSquareImages(70, 16, 16);
    const weights = (await trainLocal(spec16, initialWeights(spec16), data, opts)).weights;
    const tensors = tf.memory().numTensors;
    const probabilities = await predictProbabilities(spec16, weights, data);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(probabilities.length).toBe(70 * 2);
    for (let i = 0; i < 70; i++) expect(probabilities[2 * i]! + probabilities[2 * i + 1]!).toBeCloseTo(1, 5);
    const reference = await evaluateModel(spec16, weights, data);
    expect(metricsFromScores(probabilities, data.labels, 2).accuracy).toBeCloseTo(reference.accuracy, 12);
    // The last image's row is its own: predicting it alone gives the same probabilities.
    const last = { ...data, images: data.images.slice(69 * 16 * 16), labels: data.labels.slice(69), count: 1 };
    const alone = await predictProbabilities(spec16, weights, last);
    expect(alone[1]).toBeCloseTo(probabilities[139]!, 5);
  });

  it('does not accumulate tensors or backend buffers across calls', async () => {
    const data = brightSquareImages(24, 16, 7);
    const weights = initialWeights(spec16);
    await trainLocal(spec16, weights, data, opts);
    await evaluateModel(spec16, weights, data);
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) {
      await trainLocal(spec16, weights, data, opts);
      await evaluateModel(spec16, weights, data);
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
  });

  it('throws TrainingDivergedError when the loss stops being finite', async () => {
    const data = brightSquareImages(16, 16, 8);
    const tensors = tf.memory().numTensors;
    // Finite but enormous weights overflow the logits to infinity, and softmax of that is NaN.
    const huge = initialWeights(spec16).map((v) => v * 1e37);
    await expect(trainLocal(spec16, huge, data, opts)).rejects.toBeInstanceOf(TrainingDivergedError);
    // A learning rate this far off blows the weights up within the first epochs.
    const error = await trainLocal(spec16, initialWeights(spec16), data, { ...opts, epochs: 5, learningRate: 1e30 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingDivergedError);
    expect((error as Error).message).toMatch(/training diverged at epoch \d+, batch \d+/);
    // Failing half-way must still release the model and optimizer.
    expect(tf.memory().numTensors).toBe(tensors);
  });

  describe('rejects data that does not fit the spec', () => {
    const good = (): LabeledImages => brightSquareImages(4, 16, 9);
    const cases: Array<[string, () => LabeledImages, RegExp]> = [
      ['wrong size', () => brightSquareImages(4, 32, 9), /images are 32x32x1.*expects 16x16x1/],
      ['wrong channels', () => brightSquareImages(4, 16, 9, 3), /images are 16x16x3/],
      ['short pixel buffer', () => ({ ...good(), images: new Float32Array(16 * 16 * 3) }), /images holds 768 values but 4 images/],
      ['labels count', () => ({ ...good(), labels: new Int32Array(3) }), /labels holds 3 entries for 4 images/],
      ['label out of range', () => ({ ...good(), labels: Int32Array.from([0, 1, 2, 0]) }), /label 2 is 2, outside \[0, 2\)/],
      ['no images', () => ({ ...good(), count: 0, images: new Float32Array(0), labels: new Int32Array(0) }), /count must be a positive integer/],
      ['NaN pixel', () => {
        const d = good();
        d.images[16 * 16 * 2 + 5] = NaN;
        return d;
      }, /image 2 contains a non-finite pixel/],
    ];
    it.each(cases)('%s', async (_label, make, message) => {
      const data = make();
      await expect(trainLocal(spec16, initialWeights(spec16), data, opts)).rejects.toThrow(TrainingDataError);
      await expect(trainLocal(spec16, initialWeights(spec16), data, opts)).rejects.toThrow(message);
      await expect(evaluateModel(spec16, initialWeights(spec16), data)).rejects.toThrow(message);
    });

    it('and weights or options that do not fit', async () => {
      const data = good();
      await expect(trainLocal(spec16, new Float32Array(10), data, opts)).rejects.toThrow(/weight vector has 10 values/);
      await expect(trainLocal(spec16, initialWeights(spec16), data, { ...opts, epochs: 0 })).rejects.toThrow(/epochs must be an integer >= 1/);
      await expect(trainLocal(spec16, initialWeights(spec16), data, { ...opts, batchSize: 2.5 })).rejects.toThrow(/batchSize/);
      await expect(trainLocal(spec16, initialWeights(spec16), data, { ...opts, learningRate: -1 })).rejects.toThrow(/learningRate/);
      await expect(trainLocal(spec16, initialWeights(spec16), data, { ...opts, seed: -3 })).rejects.toThrow(/seed/);
    });
  });

  it('lets other tasks run while it trains', async () => {
    const data = brightSquareImages(64, 16, 10);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      await trainLocal(spec16, initialWeights(spec16), data, { ...opts, epochs: 2, batchSize: 4 });
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(5);
  });
});
