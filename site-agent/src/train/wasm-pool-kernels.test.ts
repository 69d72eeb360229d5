import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './index.js';
import { seededValues, sizeOf } from './kernels.testkit.js';

interface PoolCase {
  x: [number, number, number, number];
  size: number;
  stride: number;
  pad: 'same' | 'valid';
  /** Values with ties (few distinct values), and NaN and -Infinity among them. */
  special?: boolean;
}

const CASES: PoolCase[] = [
  // small-cnn's pooling: 2x2, stride 2, no padding, a size the window does not divide.
  { x: [2, 8, 8, 3], size: 2, stride: 2, pad: 'valid' },
  { x: [2, 9, 7, 4], size: 2, stride: 2, pad: 'valid' },
  // Overlapping windows and padding: gradients of several windows land on one input.
  { x: [2, 9, 9, 2], size: 3, stride: 2, pad: 'same' },
  { x: [1, 8, 10, 5], size: 3, stride: 1, pad: 'same' },
  { x: [2, 7, 7, 3], size: 2, stride: 3, pad: 'valid' },
  // Ties go to the first maximum (rows, then columns); NaN is never a maximum, an all--Infinity window takes none.
  { x: [2, 8, 8, 3], size: 2, stride: 2, pad: 'valid', special: true },
  { x: [2, 9, 9, 2], size: 3, stride: 2, pad: 'same', special: true },
];

const values = (count: number, seed: number, special = false): Float32Array =>
  special ? seededValues(count, seed, (u) => (u < 0.05 ? NaN : u < 0.1 ? -Infinity : Math.floor(u * 4))) : seededValues(count, seed);
const size = sizeOf;

/** Gradient of sum(maxPool(x) * r) with respect to x, on `backend`. */
async function poolGrad(c: PoolCase, backend: string): Promise<Float32Array> {
  await tf.setBackend(backend);
  const x = tf.tensor4d(values(size(c.x), 1, c.special), c.x);
  const outShape = tf.tidy(() => tf.maxPool(x, c.size, c.stride, c.pad).shape);
  const r = tf.tensor(values(size(outShape), 3), outShape);
  const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, c.size, c.stride, c.pad), r)))(x);
  const out = (await dx.data()) as Float32Array;
  tf.dispose([x, r, dx]);
  return out;
}

describe('the wasm MaxPoolGrad kernel', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it.each(CASES)('gives the cpu backend\'s gradient: x $x, pool $size, stride $stride, pad $pad, special $special', async (c) => {
    const wasm = await poolGrad(c, 'wasm');
    const cpu = await poolGrad(c, 'cpu');
    await tf.setBackend('wasm');
    // Each input receives the same dy terms in the same order as on the cpu backend: equal to the last bit.
    expect(Buffer.from(wasm.buffer).equals(Buffer.from(cpu.buffer))).toBe(true);
    expect(cpu.some((v) => v !== 0)).toBe(true);
  });

  it('frees what it allocates', async () => {
    const c = CASES[2]!;
    await poolGrad(c, 'wasm');
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) await poolGrad(c, 'wasm');
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
  });
});
