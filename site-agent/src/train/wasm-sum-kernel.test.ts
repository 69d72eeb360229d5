import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from './index.js';
import { seededValues, sizeOf } from './kernels.testkit.js';


async function sumOn(backend: string, shape: number[], axis: number | number[], keepDims: boolean, dtype: 'float32' | 'int32' = 'float32'): Promise<{ shape: number[]; data: Float32Array | Int32Array }> {
  await tf.setBackend(backend);
  const size = sizeOf(shape);
  const x = dtype === 'int32' ? tf.tensor(Int32Array.from(seededValues(size, 5), (v) => Math.round(v * 100)), shape, 'int32') : tf.tensor(seededValues(size, 5), shape);
  const s = tf.sum(x, axis, keepDims);
  const out = { shape: s.shape, data: (await s.data()) as Float32Array | Int32Array };
  tf.dispose([x, s]);
  return out;
}

describe('the wasm Sum kernel', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it.each([
    // A bias's gradient: every axis but the channels, in any order or sign, with and without keepDims.
    [[16, 8, 8, 5], [0, 1, 2], false],
    [[4, 6, 6, 3], [2, 0, 1], true],
    [[4, 6, 6, 3], [-4, -3, -2], false],
    [[7, 9], 0, false],
    // Every other reduction goes to the native kernel.
    [[4, 6, 6, 3], [1, 2, 3], false],
    [[4, 6, 6, 3], -1, true],
    [[4, 6, 6, 3], [0, 1, 2, 3], false],
    [[5], 0, false],
  ] as const)('gives the cpu backend\'s sum: shape %j, axis %j, keepDims %s', async (shape, axis, keepDims) => {
    const wasm = await sumOn('wasm', [...shape], axis as number | number[], keepDims);
    const cpu = await sumOn('cpu', [...shape], axis as number | number[], keepDims);
    await tf.setBackend('wasm');
    expect(wasm.shape).toEqual(cpu.shape);
    // float32 sums of up to 1024 terms in another order.
    for (let i = 0; i < cpu.data.length; i++) expect(Math.abs((wasm.data[i] as number) - (cpu.data[i] as number))).toBeLessThan(1e-4);
  });

  it('leaves integer sums to the native kernel, exactly', async () => {
    const wasm = await sumOn('wasm', [4, 6, 3], [0, 1], false, 'int32');
    const cpu = await sumOn('cpu', [4, 6, 3], [0, 1], false, 'int32');
    await tf.setBackend('wasm');
    expect([...wasm.data]).toEqual([...cpu.data]);
  });

  it('frees what it allocates', async () => {
    await sumOn('wasm', [16, 8, 8, 5], [0, 1, 2], false);
    const dataIds = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) await sumOn('wasm', [16, 8, 8, 5], [0, 1, 2], false);
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
  });
});
