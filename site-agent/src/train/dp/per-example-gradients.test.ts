import { createPrng, describeParameters, initialWeights, parseModelSpec, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend.js';
import { buildModel } from '../model.js';
import { SliceGradients, type Slice } from '../parallel/slice-gradients.js';
import { ClippedSliceGradients } from './per-example-gradients.js';
import { tappedForward } from './tapped-forward.js';

/** Every architecture, every kind of weighted layer (strided and 1x1 convolutions, depthwise, dense), small. */
const SPECS: ModelSpec[] = [
  { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 7 },
  { architecture: 'small-cnn', inputSize: 20, channels: 3, classes: 3, seed: 8 },
  { architecture: 'resnet', inputSize: 17, channels: 1, classes: 3, seed: 9, width: 4, blocksPerStage: [1, 1] },
  { architecture: 'mobilenet', inputSize: 19, channels: 3, classes: 2, seed: 10, alpha: 0.25 },
];

function randomSlice(spec: ModelSpec, count: number, seed: number): Slice {
  const prng = createPrng(seed);
  const size = spec.inputSize * spec.inputSize * spec.channels;
  const pixels = Float32Array.from({ length: count * size }, () => prng.nextFloat());
  const labels = Int32Array.from({ length: count }, () => Math.floor(prng.nextFloat() * spec.classes));
  return { pixels, labels, count, height: spec.inputSize, width: spec.inputSize, channels: spec.channels };
}

function one(slice: Slice, i: number): Slice {
  const size = slice.height * slice.width * slice.channels;
  return { ...slice, count: 1, pixels: slice.pixels.subarray(i * size, (i + 1) * size), labels: slice.labels.subarray(i, i + 1) };
}

function norm(values: ArrayLike<number>): number {
  let sq = 0;
  for (let i = 0; i < values.length; i++) sq += (values[i] as number) ** 2;
  return Math.sqrt(sq);
}

/** Largest |a - b| relative to the largest |b|: a gradient's small entries carry only float rounding. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return diff / scale;
}

describe.each(['wasm', 'cpu'] as const)('per-example gradients on the %s backend', (backend) => {
  beforeAll(async () => {
    expect((await initBackend(backend)).name).toBe(backend);
  });
  afterAll(async () => {
    await initBackend('wasm');
  });

  it.each(SPECS.map((s) => [s.architecture, s] as const))('%s: the tapped forward pass is the layers model', (_, spec) => {
    const valid = parseModelSpec(spec);
    const model = buildModel(valid, initialWeights(valid));
    try {
      const slice = randomSlice(valid, 3, 1);
      const [expected, actual] = tf.tidy(() => {
        const xs = tf.tensor4d(slice.pixels, [3, valid.inputSize, valid.inputSize, valid.channels]);
        const names = describeParameters(valid).map((p) => p.name);
        const byName = new Map(model.weights.map((w, i) => [names[i]!, w.read() as tf.Tensor]));
        return [(model.apply(xs) as tf.Tensor).dataSync(), tappedForward(valid, byName, xs).probs.dataSync()];
      });
      expect(relativeError(actual, expected)).toBeLessThan(1e-6);
    } finally {
      model.dispose();
    }
  });

  it.each(SPECS.map((s) => [s.architecture, s] as const))('%s: each example\'s gradient equals its gradient computed alone', (_, spec) => {
    const valid = parseModelSpec(spec);
    const model = buildModel(valid, initialWeights(valid));
    try {
      // Class weights too: the clipped quantity is the weighted example's gradient.
      const classWeights = tf.tensor1d(Array.from({ length: valid.classes }, (_, c) => 0.5 + c), 'float32');
      const perExample = new ClippedSliceGradients(model, valid, 1, classWeights);
      const alone = new SliceGradients(model, valid.classes, classWeights);
      const slice = randomSlice(valid, 5, 2);
      const all = perExample.perExampleGradients(slice);
      const reference = new Float32Array(alone.size);
      for (let i = 0; i < slice.count; i++) {
        alone.compute(one(slice, i), reference);
        const mine = all.subarray(i * alone.size, (i + 1) * alone.size);
        // Float32 sums in a different order: observed below 1e-6 of the largest entry.
        expect(relativeError(mine, reference)).toBeLessThan(1e-5);
        expect(norm(mine)).toBeGreaterThan(0);
      }
      classWeights.dispose();
    } finally {
      model.dispose();
    }
  });
});

describe('clipped sums', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('clips each example to the norm and sums, exactly as one by one, in chunks or not', () => {
    const valid = parseModelSpec(SPECS[2]!);
    const model = buildModel(valid, initialWeights(valid));
    try {
      const alone = new SliceGradients(model, valid.classes);
      const slice = randomSlice(valid, 6, 3);
      const single = new Float32Array(alone.size);
      const norms: number[] = [];
      const expected = new Float64Array(alone.size);
      for (let i = 0; i < slice.count; i++) {
        alone.compute(one(slice, i), single);
        norms.push(norm(single));
      }
      // A clip norm between the smallest and largest example norm: some examples are scaled, some are not.
      const sorted = [...norms].sort((a, b) => a - b);
      const clipNorm = (sorted[1]! + sorted[4]!) / 2;
      for (let i = 0; i < slice.count; i++) {
        alone.compute(one(slice, i), single);
        const scale = Math.min(1, clipNorm / (norms[i]! + 1e-6));
        single.forEach((g, j) => (expected[j] = expected[j]! + scale * g));
      }
      const clipped = new ClippedSliceGradients(model, valid, clipNorm);
      const out = new Float32Array(alone.size);
      const stats = clipped.compute(slice, out);
      expect(relativeError(out, expected)).toBeLessThan(1e-5);
      expect(stats.clipped).toBe(norms.filter((n) => n > clipNorm).length);
      expect(stats.clipped).toBeGreaterThan(0);
      expect(stats.clipped).toBeLessThan(slice.count);
      // Every clipped example contributes at most clipNorm, so the sum's norm cannot exceed count × clipNorm.
      expect(norm(out)).toBeLessThanOrEqual(slice.count * clipNorm * (1 + 1e-6));
    } finally {
      model.dispose();
    }
  });

  it('rejects a clip norm that is not a positive number', () => {
    const valid = parseModelSpec(SPECS[0]!);
    const model = buildModel(valid, initialWeights(valid));
    try {
      expect(() => new ClippedSliceGradients(model, valid, 0)).toThrow(/clipNorm must be a finite number > 0, got 0/);
      expect(() => new ClippedSliceGradients(model, valid, Number.NaN)).toThrow(/clipNorm/);
    } finally {
      model.dispose();
    }
  });
});
