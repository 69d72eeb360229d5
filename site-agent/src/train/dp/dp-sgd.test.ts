import { initialWeights, type ModelSpec } from '@federa/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import { brightSquareImages, evaluateModel, initBackend, trainLocal, type TrainOptions } from '../index.js';
import { poissonCapacity, poissonSample, privatizeGradient } from './dp-sgd.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 32, channels: 1, classes: 2, seed: 4 };

describe('DP-SGD training', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it('still learns with clipping and moderate noise, and reports what the accountant needs', async () => {
    const train = brightSquareImages(256, 32, 21);
    const heldOut = brightSquareImages(100, 32, 22);
    const opts: TrainOptions = { epochs: 6, batchSize: 32, learningRate: 0.01, optimizer: 'adam', seed: 3, privacy: { clipNorm: 1, noiseMultiplier: 0.8 } };
    const result = await trainLocal(spec, initialWeights(spec), train, opts);
    const after = await evaluateModel(spec, result.weights, heldOut);
    expect(after.accuracy).toBeGreaterThan(0.8);
    expect(result.privacy).toMatchObject({ sampleRate: 32 / 256, steps: 6 * 8, noiseMultiplier: 0.8, clipNorm: 1 });
    expect(result.privacy!.clippedFraction).toBeGreaterThan(0);
    expect(result.privacy!.clippedFraction).toBeLessThanOrEqual(1);
  });

  it('is not reproducible from the seed (secure sampling and noise), where training without DP is', async () => {
    const train = brightSquareImages(40, 16, 5);
    const small: ModelSpec = { ...spec, inputSize: 16 };
    const base: TrainOptions = { epochs: 1, batchSize: 8, learningRate: 0.05, seed: 9 };
    const dp: TrainOptions = { ...base, privacy: { clipNorm: 1, noiseMultiplier: 1 } };
    const [a, b] = [await trainLocal(small, initialWeights(small), train, dp), await trainLocal(small, initialWeights(small), train, dp)];
    expect(a.weights).not.toEqual(b.weights);
    const [c, d] = [await trainLocal(small, initialWeights(small), train, base), await trainLocal(small, initialWeights(small), train, base)];
    expect(c.weights).toEqual(d.weights);
    expect(c.privacy).toBeUndefined();
  });

  it('takes every image every step when the batch is larger than the data', async () => {
    const train = brightSquareImages(6, 16, 8);
    const small: ModelSpec = { ...spec, inputSize: 16 };
    const result = await trainLocal(small, initialWeights(small), train, { epochs: 2, batchSize: 16, learningRate: 0.05, seed: 1, privacy: { clipNorm: 1, noiseMultiplier: 1 } });
    expect(result.privacy).toMatchObject({ sampleRate: 1, steps: 2 });
    expect(result.weights.every(Number.isFinite)).toBe(true);
  });

  it('refuses settings that are not positive numbers, naming them', async () => {
    const train = brightSquareImages(8, 16, 7);
    const small: ModelSpec = { ...spec, inputSize: 16 };
    const opts = (privacy: { clipNorm: number; noiseMultiplier: number }): TrainOptions => ({ epochs: 1, batchSize: 4, learningRate: 0.1, seed: 1, privacy });
    await expect(trainLocal(small, initialWeights(small), train, opts({ clipNorm: 0, noiseMultiplier: 1 }))).rejects.toThrow(/privacy.clipNorm must be a finite number > 0, got 0/);
    await expect(trainLocal(small, initialWeights(small), train, opts({ clipNorm: 1, noiseMultiplier: -1 }))).rejects.toThrow(/privacy.noiseMultiplier/);
  });
});

describe('DP-SGD pieces', () => {
  it('samples each index with the given probability', () => {
    const counts = new Float64Array(50);
    const trials = 2000;
    for (let t = 0; t < trials; t++) for (const i of poissonSample(50, 0.2)) counts[i]!++;
    // Each count is Binomial(2000, 0.2): mean 400, sd about 17.9; 6 sd either side.
    for (const c of counts) expect(Math.abs(c - 400)).toBeLessThan(6 * 17.9);
    expect(poissonSample(10, 0).length).toBe(0);
    expect(poissonSample(10, 1)).toEqual(Int32Array.from({ length: 10 }, (_, i) => i));
    expect(() => poissonSample(10, 1.5)).toThrow(/sampling rate must be in \[0, 1\], got 1.5/);
  });

  it('sizes the batch buffer six standard deviations above the mean, never past the data', () => {
    expect(poissonCapacity(64, 10_000)).toBe(Math.ceil(64 + 6 * Math.sqrt(10_000 * 0.0064 * (1 - 0.0064))) + 1);
    expect(poissonCapacity(8, 10)).toBe(10);
  });

  it('adds noise of standard deviation noiseMultiplier·clipNorm to the sum before dividing by the expected batch', () => {
    const sum = new Float32Array(200_000).fill(64);
    privatizeGradient(sum, { clipNorm: 2, noiseMultiplier: 1.5 }, 64);
    let mean = 0;
    for (const v of sum) mean += v;
    mean /= sum.length;
    let variance = 0;
    for (const v of sum) variance += (v - mean) ** 2;
    variance /= sum.length - 1;
    // The mean is 1 (64 / 64) plus noise of sd 3 / 64 per value; its standard error is tiny.
    expect(Math.abs(mean - 1)).toBeLessThan(6 * (3 / 64) / Math.sqrt(sum.length));
    expect(Math.sqrt(variance)).toBeCloseTo(3 / 64, 3);
  });
});
