import { describeParameters, initialWeights, parameterCount, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, initBackend, registerWasmTrainingKernels } from './index.js';
import { seededValues, sizeOf } from './kernels.testkit.js';

type Pad = 'same' | 'valid' | number;
interface ConvCase {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: 1 | 2 | 3;
  pad: Pad;
}

const CASES: ConvCase[] = [
  { x: [2, 8, 8, 1], filter: [3, 3, 1, 4], stride: 1, pad: 'same' },
  { x: [3, 9, 7, 3], filter: [3, 3, 3, 5], stride: 2, pad: 'same' },
  { x: [2, 9, 9, 2], filter: [3, 3, 2, 3], stride: 2, pad: 'valid' },
  { x: [1, 10, 11, 4], filter: [5, 5, 4, 2], stride: 2, pad: 'valid' },
  { x: [2, 6, 6, 2], filter: [3, 3, 2, 2], stride: 1, pad: 'valid' },
  // Even filters pad asymmetrically under 'same'.
  { x: [2, 7, 8, 3], filter: [2, 2, 3, 4], stride: 2, pad: 'same' },
  { x: [2, 7, 8, 3], filter: [4, 4, 3, 4], stride: 1, pad: 'same' },
  { x: [1, 8, 8, 2], filter: [1, 1, 2, 3], stride: 1, pad: 'valid' },
  { x: [2, 8, 8, 3], filter: [3, 3, 3, 2], stride: 1, pad: 1 },
  { x: [4, 16, 16, 8], filter: [3, 3, 8, 16], stride: 1, pad: 'same' },
  // Strided 1x1 projections (resnet shortcuts), odd sizes whose last row the window never reaches, a stride of 3.
  { x: [2, 8, 8, 4], filter: [1, 1, 4, 6], stride: 2, pad: 'same' },
  { x: [2, 9, 9, 3], filter: [1, 1, 3, 2], stride: 2, pad: 'valid' },
  { x: [2, 10, 10, 2], filter: [3, 3, 2, 3], stride: 3, pad: 'same' },
  { x: [2, 11, 10, 2], filter: [3, 3, 2, 3], stride: 3, pad: 'valid' },
  // Padding wider than the filter: only the native kernel can do it.
  { x: [1, 6, 6, 2], filter: [1, 1, 2, 3], stride: 2, pad: 1 },
  // More than 4 input channels: the filter gradient takes the transposed-convolution path, not the patch matrix.
  { x: [2, 9, 7, 6], filter: [3, 3, 6, 5], stride: 2, pad: 'same' },
  { x: [2, 9, 9, 5], filter: [3, 3, 5, 3], stride: 2, pad: 'valid' },
  { x: [2, 7, 8, 6], filter: [2, 2, 6, 4], stride: 2, pad: 'same' },
  { x: [2, 8, 8, 5], filter: [3, 3, 5, 2], stride: 1, pad: 1 },
];

/** Depthwise filters are [kh, kw, channels, multiplier]. */
const DEPTHWISE_CASES: ConvCase[] = [
  { x: [2, 8, 8, 3], filter: [3, 3, 3, 1], stride: 1, pad: 'same' },
  { x: [2, 8, 8, 4], filter: [3, 3, 4, 1], stride: 2, pad: 'same' },
  { x: [3, 9, 7, 2], filter: [3, 3, 2, 1], stride: 2, pad: 'same' },
  { x: [2, 9, 9, 2], filter: [3, 3, 2, 1], stride: 2, pad: 'valid' },
  { x: [2, 10, 11, 3], filter: [5, 5, 3, 1], stride: 1, pad: 'valid' },
  { x: [2, 7, 8, 2], filter: [2, 2, 2, 1], stride: 2, pad: 'same' },
  { x: [2, 8, 8, 2], filter: [3, 3, 2, 1], stride: 1, pad: 1 },
  { x: [2, 8, 8, 3], filter: [3, 3, 3, 2], stride: 1, pad: 'same' },
  { x: [2, 9, 9, 2], filter: [3, 3, 2, 3], stride: 2, pad: 'same' },
  { x: [4, 16, 16, 16], filter: [3, 3, 16, 1], stride: 2, pad: 'same' },
];

const values = (count: number, seed: number): Float32Array => seededValues(count, seed);
const size = sizeOf;

type Conv = (x: tf.Tensor4D, f: tf.Tensor4D, stride: number, pad: Pad) => tf.Tensor4D;
const conv2d: Conv = (x, f, stride, pad) => tf.conv2d(x, f, stride, pad);
const depthwiseConv2d: Conv = (x, f, stride, pad) => tf.depthwiseConv2d(x, f, stride, pad);

/** Gradients of sum(conv(x, f) * r) with respect to x and f, computed on `backend`. */
async function convGrads(c: ConvCase, backend: string, conv: Conv = conv2d): Promise<{ dx: Float32Array; df: Float32Array }> {
  await tf.setBackend(backend);
  const x = tf.tensor4d(values(size(c.x), 1), c.x);
  const f = tf.tensor4d(values(size(c.filter), 2), c.filter);
  const outShape = tf.tidy(() => conv(x, f, c.stride, c.pad).shape);
  const r = tf.tensor(values(size(outShape), 3), outShape);
  const [dx, df] = tf.grads((a, b) => tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), r)))([x, f]);
  const result = { dx: (await dx!.data()) as Float32Array, df: (await df!.data()) as Float32Array };
  tf.dispose([x, f, r, dx!, df!]);
  return result;
}

/** Largest difference relative to the magnitude of the reference (float32 sums in different orders differ a little). */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  let maxDiff = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return maxDiff / scale;
}

describe('wasm training kernels', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it('are registered by initBackend, once', () => {
    for (const kernel of ['Conv2DBackpropFilter', 'DepthwiseConv2dNativeBackpropInput', 'DepthwiseConv2dNativeBackpropFilter']) {
      expect(tf.getKernel(kernel, 'wasm'), kernel).toBeDefined();
    }
    expect(registerWasmTrainingKernels()).toEqual([]);
  });

  it.each(CASES)('conv2d gradients match the cpu backend: x $x, filter $filter, stride $stride, pad $pad', async (c) => {
    const wasm = await convGrads(c, 'wasm');
    const cpu = await convGrads(c, 'cpu');
    await tf.setBackend('wasm');
    expect(relativeError(wasm.df, cpu.df)).toBeLessThan(1e-4);
    expect(relativeError(wasm.dx, cpu.dx)).toBeLessThan(1e-4);
    // Guard against a vacuous pass (e.g. both all zeros).
    expect(cpu.df.some((v) => Math.abs(v) > 0.1)).toBe(true);
  });

  it.each(DEPTHWISE_CASES)(
    'depthwise conv2d gradients match the cpu backend: x $x, filter $filter, stride $stride, pad $pad',
    async (c) => {
      const wasm = await convGrads(c, 'wasm', depthwiseConv2d);
      const cpu = await convGrads(c, 'cpu', depthwiseConv2d);
      await tf.setBackend('wasm');
      expect(relativeError(wasm.df, cpu.df)).toBeLessThan(1e-4);
      expect(relativeError(wasm.dx, cpu.dx)).toBeLessThan(1e-4);
      expect(cpu.df.some((v) => Math.abs(v) > 0.1)).toBe(true);
      expect(cpu.dx.some((v) => Math.abs(v) > 0.1)).toBe(true);
    },
  );

  it.each([
    ['conv2d, stride 2', CASES[1]!, conv2d],
    ['conv2d, strided 1x1', CASES[10]!, conv2d],
    ['conv2d, 6 input channels', CASES[15]!, conv2d],
    ['depthwise, multiplier 3, stride 2', DEPTHWISE_CASES[8]!, depthwiseConv2d],
  ] as const)('free their intermediate buffers (%s)', async (_label, c, conv) => {
    await tf.setBackend('wasm');
    await convGrads(c, 'wasm', conv);
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) await convGrads(c, 'wasm', conv);
    expect(tf.memory().numTensors).toBe(tensors);
    // Intermediates live below the engine, so only the backend's own count would reveal a leak.
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
  });

  const modelCases: Array<[string, ModelSpec]> = [
    ['small-cnn (pooling, relu, dense)', { architecture: 'small-cnn', inputSize: 24, channels: 3, classes: 3, seed: 5 }],
    ['resnet (strided and 1x1 convolutions, add, average pooling)', { architecture: 'resnet', inputSize: 24, channels: 3, classes: 3, seed: 5, width: 4, blocksPerStage: [1, 1] }],
    ['mobilenet (depthwise convolutions)', { architecture: 'mobilenet', inputSize: 24, channels: 3, classes: 3, seed: 5, alpha: 0.25 }],
  ];
  it.each(modelCases)('give the same %s parameter gradients as the cpu backend', async (_label, spec) => {
    const n = 4;
    const pixels = values(n * 24 * 24 * 3, 9).map((v) => (v + 1) / 2);
    // Nudged off the initial weights, whose zero-initialised residual branches would pass no gradient to conv1.
    // The nudge is fixed, and chosen so that no pre-activation lies within float rounding of a ReLU's kink: one that
    // did could come out on different sides of zero on the two backends and flip a mask, a legitimate difference.
    const noise = values(parameterCount(spec), 13);
    const weights = initialWeights(spec).map((w, i) => w + 0.1 * noise[i]!);
    const grads = async (backend: string): Promise<Float32Array[]> => {
      await tf.setBackend(backend);
      const model = buildModel(spec, weights);
      const xs = tf.tensor4d(pixels, [n, 24, 24, 3]);
      const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), 3);
      const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const { grads: g } = tf.variableGrads(
        () => tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.log(model.apply(xs) as tf.Tensor2D)), 1))) as tf.Scalar,
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
    wasm.forEach((g, i) => {
      expect(relativeError(g, cpu[i]!), params[i]!.name).toBeLessThan(1e-4);
    });
    // Every tensor must receive a gradient, or a tensor that is wrong on both backends alike could hide.
    cpu.forEach((g, i) => expect(g.some((v) => Math.abs(v) > 1e-6), params[i]!.name).toBe(true));
  });
});
