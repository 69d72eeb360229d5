import { createPrng, initialWeights, parameterCount, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateModel, initBackend, trainLocal, type LabeledImages, type TrainOptions } from './index.js';

/**
 * A learnable set for up to 5 classes in which the class is a texture, not a place, so that it survives global
 * average pooling: class 0 is dim noise, classes 1-4 add a patch of horizontal stripes, vertical stripes, a
 * checkerboard or solid brightness at a random place. Deterministic from `seed`.
 */
function textureImages(count: number, size: number, channels: number, classes: number, seed: number): LabeledImages {
  const prng = createPrng(seed);
  const images = new Float32Array(count * size * size * channels);
  const labels = new Int32Array(count);
  const side = Math.floor(size / 2);
  // Period 4 (2 on, 2 off), so a stride-2 stem cannot alias the stripes away.
  const on = (label: number, y: number, x: number): boolean =>
    [false, (y & 2) === 0, (x & 2) === 0, ((y ^ x) & 2) === 0, true][label]!;
  for (let n = 0; n < count; n++) {
    const label = n % classes;
    labels[n] = label;
    const base = n * size * size * channels;
    for (let i = 0; i < size * size * channels; i++) images[base + i] = prng.nextFloat() * 0.3;
    const top = Math.floor(prng.nextFloat() * (size - side));
    const left = Math.floor(prng.nextFloat() * (size - side));
    for (let y = top; y < top + side; y++) {
      for (let x = left; x < left + side; x++) {
        if (!on(label, y, x)) continue;
        for (let c = 0; c < channels; c++) images[base + (y * size + x) * channels + c] = 0.9 + prng.nextFloat() * 0.1;
      }
    }
  }
  return { images, labels, count, height: size, width: size, channels };
}

/** Each new architecture grayscale and RGB, binary and multi-class, at small options so the tests stay quick. */
const SPECS: ModelSpec[] = [
  { architecture: 'resnet', inputSize: 24, channels: 1, classes: 2, seed: 1, width: 8, blocksPerStage: [1, 1] },
  { architecture: 'resnet', inputSize: 24, channels: 1, classes: 4, seed: 2, width: 8, blocksPerStage: [1, 1] },
  { architecture: 'resnet', inputSize: 24, channels: 3, classes: 2, seed: 3, width: 8, blocksPerStage: [1, 1] },
  { architecture: 'resnet', inputSize: 24, channels: 3, classes: 4, seed: 4, width: 8, blocksPerStage: [2, 1] },
  { architecture: 'mobilenet', inputSize: 24, channels: 1, classes: 2, seed: 1, alpha: 0.25 },
  { architecture: 'mobilenet', inputSize: 24, channels: 1, classes: 4, seed: 2, alpha: 0.25 },
  { architecture: 'mobilenet', inputSize: 24, channels: 3, classes: 2, seed: 3, alpha: 0.25 },
  { architecture: 'mobilenet', inputSize: 24, channels: 3, classes: 4, seed: 4, alpha: 0.5 },
];

const OPTS: TrainOptions = { epochs: 4, batchSize: 8, learningRate: 0.003, seed: 5, optimizer: 'adam' };

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe.each(['wasm', 'cpu'] as const)('resnet and mobilenet train on the %s backend', (backend) => {
  beforeAll(async () => {
    expect((await initBackend(backend)).name).toBe(backend);
  });

  afterAll(async () => {
    await initBackend('wasm');
  });

  // The plain cpu backend trains two orders of magnitude slower: there, one small RGB multi-class spec per
  // architecture, on fewer and smaller images with a larger step.
  const cases = (
    backend === 'wasm'
      ? SPECS.map((spec) => ({ spec, count: 32, opts: OPTS }))
      : SPECS.filter((spec) => spec.channels === 3 && spec.classes === 4).map((spec) => ({
          spec: { ...spec, inputSize: 16 },
          count: 8,
          opts: { ...OPTS, learningRate: 0.01 },
        }))
  ).map((c) => ({ ...c, label: `${c.spec.architecture}, ${c.spec.inputSize}x${c.spec.inputSize}x${c.spec.channels}, ${c.spec.classes} classes` }));

  it.each(cases)('$label: a few steps lower the loss', async ({ spec, count, opts }) => {
    const data = textureImages(count, spec.inputSize, spec.channels, spec.classes, spec.seed + 10);
    const start = initialWeights(spec);
    const before = await evaluateModel(spec, start, data);
    const result = await trainLocal(spec, start, data, opts);
    const after = await evaluateModel(spec, result.weights, data);

    expect(result.backend).toBe(backend);
    expect(result.weights.length).toBe(parameterCount(spec));
    expect(result.weights.every(Number.isFinite)).toBe(true);
    expect(sameBits(result.weights, start)).toBe(false);
    // Chance level is ln(classes); the starting model sits near it and 4 epochs of Adam must get clearly below.
    expect(before.loss).toBeGreaterThan(0.8 * Math.log(spec.classes));
    expect(after.loss).toBeLessThan(before.loss * 0.9);
  });
});

describe('resnet and mobilenet on wasm', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it.each([SPECS[3]!, SPECS[7]!])('$architecture training is deterministic for a seed and leaks nothing', async (spec) => {
    const data = textureImages(16, spec.inputSize, spec.channels, spec.classes, 99);
    const start = initialWeights(spec);
    const a = await trainLocal(spec, start, data, { ...OPTS, epochs: 1 });
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    const b = await trainLocal(spec, start, data, { ...OPTS, epochs: 1 });
    expect(sameBits(a.weights, b.weights)).toBe(true);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
  });
});
