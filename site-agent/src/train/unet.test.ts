import { describeParameters, initialWeights, parameterCount, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, getFlatWeights, initBackend, setFlatWeights } from './index.js';
import { seededValues } from './kernels.testkit.js';

type UnetInput = Extract<ModelSpec, { architecture: 'unet' }>;

/** Grayscale and RGB, binary and multi-class, shallow to deep; small widths so the tests stay quick. */
const SPECS: UnetInput[] = [
  { architecture: 'unet', inputSize: 64, channels: 1, classes: 2, seed: 1 },
  { architecture: 'unet', inputSize: 24, channels: 3, classes: 4, seed: 2, width: 4, depth: 1 },
  { architecture: 'unet', inputSize: 32, channels: 1, classes: 3, seed: 3, width: 8, depth: 2 },
  { architecture: 'unet', inputSize: 32, channels: 3, classes: 2, seed: 4, width: 4, depth: 5 },
];

/** The parameter count worked out from the architecture's definition, independently of describeParameters. */
function handCount(width: number, depth: number, channels: number, classes: number): number {
  const conv = (k: number, inC: number, outC: number): number => k * k * inC * outC + outC;
  const f = (level: number): number => width * 2 ** level;
  let total = 0;
  let inC = channels;
  for (let l = 0; l < depth; l++) {
    total += conv(3, inC, f(l)) + conv(3, f(l), f(l));
    inC = f(l);
  }
  total += conv(3, f(depth - 1), f(depth)) + conv(3, f(depth), f(depth));
  // A 2x2 transposed convolution has as many weights as a 2x2 convolution with the channels swapped.
  for (let l = depth - 1; l >= 0; l--) total += conv(2, f(l + 1), f(l)) + conv(3, 2 * f(l), f(l)) + conv(3, f(l), f(l));
  return total + conv(1, width, classes);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Largest difference relative to the magnitude of the reference, as in wasm-kernels.test.ts. */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  let maxDiff = 0;
  let scale = 1e-3;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return maxDiff / scale;
}

describe.each(SPECS)('buildModel(unet, $inputSize x $inputSize x $channels, $classes classes, width $width, depth $depth)', (spec) => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('has weights matching describeParameters one-to-one, by name and shape, and the hand-computed count', () => {
    const model = buildModel(spec);
    try {
      const params = describeParameters(spec);
      expect(model.weights.map((w) => w.originalName)).toEqual(params.map((p) => p.name));
      expect(model.weights.map((w) => w.read().shape)).toEqual(params.map((p) => p.shape));
      expect(model.trainableWeights.length).toBe(params.length);
      const count = handCount(spec.width ?? 16, spec.depth ?? 3, spec.channels, spec.classes);
      expect(parameterCount(spec)).toBe(count);
      expect(model.countParams()).toBe(count);
      expect(model.outputs[0]!.shape).toEqual([null, spec.inputSize, spec.inputSize, spec.classes]);
    } finally {
      model.dispose();
    }
  });

  it('starts from the initial weights, round-trips others bit-exactly and outputs per-pixel probabilities', () => {
    const model = buildModel(spec);
    try {
      expect(sameBits(getFlatWeights(model), initialWeights(spec))).toBe(true);
      const flat = new Float32Array(parameterCount(spec)).map((_, i) => Math.sin(i * 0.37) * 0.2);
      setFlatWeights(model, flat);
      expect(sameBits(getFlatWeights(model), flat)).toBe(true);
      const { shape, sums } = tf.tidy(() => {
        const x = tf.randomUniform([2, spec.inputSize, spec.inputSize, spec.channels], 0, 1, 'float32', 7);
        const probs = model.predict(x) as tf.Tensor4D;
        return { shape: probs.shape, sums: tf.sum(probs, 3).dataSync() };
      });
      expect(shape).toEqual([2, spec.inputSize, spec.inputSize, spec.classes]);
      expect(sums.length).toBe(2 * spec.inputSize * spec.inputSize);
      for (const sum of sums) expect(sum).toBeCloseTo(1, 5);
    } finally {
      model.dispose();
    }
  });
});

describe('unet on wasm and cpu', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it('has about 482k parameters at the defaults (width 16, depth 3), whatever the input size', () => {
    expect(parameterCount(SPECS[0]!)).toBe(481_762);
    expect(parameterCount({ ...SPECS[0]!, inputSize: 128 })).toBe(481_762);
    expect(parameterCount({ ...SPECS[0]!, width: 8, depth: 2 })).toBe(handCount(8, 2, 1, 2));
    expect(parameterCount({ ...SPECS[0]!, width: 32, depth: 4, channels: 3, classes: 4 })).toBe(handCount(32, 4, 3, 4));
  });

  it('gives the same parameter gradients of a per-pixel cross-entropy on wasm as on cpu', async () => {
    const spec: UnetInput = { architecture: 'unet', inputSize: 16, channels: 3, classes: 3, seed: 5, width: 4, depth: 2 };
    const n = 2;
    const size = spec.inputSize;
    const pixels = seededValues(n * size * size * spec.channels, 9, (u) => u);
    const mask = Array.from(seededValues(n * size * size, 10, (u) => Math.floor(u * spec.classes)));
    // Nudged off the initial weights (zero biases) by a fixed amount, as in wasm-kernels.test.ts.
    const noise = seededValues(parameterCount(spec), 13);
    const weights = initialWeights(spec).map((w, i) => w + 0.1 * noise[i]!);
    const grads = async (backend: string): Promise<Float32Array[]> => {
      await tf.setBackend(backend);
      const model = buildModel(spec, weights);
      const xs = tf.tensor4d(pixels, [n, size, size, spec.channels]);
      const labels = tf.oneHot(tf.tensor3d(mask, [n, size, size], 'int32'), spec.classes);
      const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const { grads: g } = tf.variableGrads(
        () => tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.log(model.apply(xs) as tf.Tensor4D)), 3))) as tf.Scalar,
        variables,
      );
      const out = await Promise.all(variables.map((v) => g[v.name]!.data() as Promise<Float32Array>));
      tf.dispose([xs, labels, ...Object.values(g)]);
      model.dispose();
      return out;
    };
    const wasm = await grads('wasm');
    const cpu = await grads('cpu');
    await tf.setBackend('wasm');
    const params = describeParameters(spec);
    expect(wasm.length).toBe(params.length);
    wasm.forEach((g, i) => expect(relativeError(g, cpu[i]!), params[i]!.name).toBeLessThan(1e-4));
    // Every tensor, the transposed convolutions' included, must receive a gradient.
    cpu.forEach((g, i) => expect(g.some((v) => Math.abs(v) > 1e-6), params[i]!.name).toBe(true));
  });

  it('does not leak tensors', () => {
    const spec = SPECS[2]!;
    const before = tf.memory().numTensors;
    const model = buildModel(spec);
    setFlatWeights(model, getFlatWeights(model));
    tf.tidy(() => {
      model.predict(tf.zeros([1, spec.inputSize, spec.inputSize, spec.channels]));
    });
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
