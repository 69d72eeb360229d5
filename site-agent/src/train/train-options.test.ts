import { createPrng, initialWeights, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { augmentBatch } from './augment.js';
import { brightSquareImages, evaluateModel, initBackend, trainLocal, type LabeledImages, type TrainOptions } from './index.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 21 };
const opts: TrainOptions = { epochs: 2, batchSize: 8, learningRate: 0.05, seed: 9 };
const augmentation = { flips: true, rotationDegrees: 15, intensityJitter: 0.1 };

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function distance(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(sum);
}

/** The images of `data` at `rows`, in that order. */
function pick(data: LabeledImages, rows: number[]): LabeledImages {
  const size = data.height * data.width * data.channels;
  const images = new Float32Array(rows.length * size);
  rows.forEach((r, i) => images.set(data.images.subarray(r * size, (r + 1) * size), i * size));
  return { ...data, images, labels: Int32Array.from(rows, (r) => data.labels[r]!), count: rows.length };
}

const rowsWithLabel = (data: LabeledImages, label: number): number[] =>
  Array.from(data.labels.keys()).filter((i) => data.labels[i] === label);

describe('trainLocal options', () => {
  beforeAll(async () => {
    expect((await initBackend('auto')).name).toBe('wasm');
  });

  it('default-valued options reproduce plain training bit for bit', async () => {
    const data = brightSquareImages(24, 16, 1);
    const weights = initialWeights(spec);
    const plain = await trainLocal(spec, weights, data, opts);
    const zeroMu = await trainLocal(spec, weights, data, { ...opts, proximalMu: 0 });
    expect(sameBits(plain.weights, zeroMu.weights)).toBe(true);
    expect(zeroMu.loss).toBe(plain.loss);
    // Unit class weights scale nothing: same model up to float rounding.
    const unit = await trainLocal(spec, weights, data, { ...opts, classWeights: [1, 1] });
    expect(distance(unit.weights, plain.weights)).toBeLessThan(1e-4);
  });

  it('FedProx with a large mu keeps the weights much closer to the starting weights', async () => {
    const data = brightSquareImages(32, 16, 2);
    const start = initialWeights(spec);
    const longer = { ...opts, epochs: 3 };
    const free = await trainLocal(spec, start, data, longer);
    const prox = await trainLocal(spec, start, data, { ...longer, proximalMu: 5 });
    const freeDistance = distance(free.weights, start);
    expect(freeDistance).toBeGreaterThan(0);
    expect(distance(prox.weights, start)).toBeLessThan(0.5 * freeDistance);
    expect(sameBits(start, initialWeights(spec))).toBe(true);
  });

  it('balanced class weights raise minority-class recall on an imbalanced set', async () => {
    const pool = brightSquareImages(240, 16, 3);
    // 108 negatives, 12 positives: plain training learns to answer "negative".
    const train = pick(pool, [...rowsWithLabel(pool, 0).slice(0, 108), ...rowsWithLabel(pool, 1).slice(0, 12)]);
    const heldOut = brightSquareImages(120, 16, 4);
    // Accuracy on positives only is the minority-class recall.
    const positives = pick(heldOut, rowsWithLabel(heldOut, 1));
    const trainOpts: TrainOptions = { epochs: 6, batchSize: 8, learningRate: 0.05, seed: 9 };
    const start = initialWeights(spec);
    const plain = await trainLocal(spec, start, train, trainOpts);
    const balanced = await trainLocal(spec, start, train, { ...trainOpts, classWeights: 'balanced' });
    const plainRecall = (await evaluateModel(spec, plain.weights, positives)).accuracy;
    const balancedRecall = (await evaluateModel(spec, balanced.weights, positives)).accuracy;
    expect(balancedRecall).toBeGreaterThan(0.5);
    expect(balancedRecall).toBeGreaterThan(plainRecall + 0.3);
  });

  it('reports the unweighted loss whatever the class weights', async () => {
    const data = brightSquareImages(20, 16, 5);
    const start = initialWeights(spec);
    const result = await trainLocal(spec, start, data, { ...opts, epochs: 1, batchSize: 20, learningRate: 1e-9, classWeights: [7, 0.5] });
    const reference = await evaluateModel(spec, start, data);
    expect(result.loss).toBeCloseTo(reference.loss, 5);
  });

  it('augmentation is deterministic per seed and changes training', async () => {
    const data = brightSquareImages(24, 16, 6);
    const start = initialWeights(spec);
    const plain = await trainLocal(spec, start, data, opts);
    const a = await trainLocal(spec, start, data, { ...opts, augmentation });
    const b = await trainLocal(spec, start, data, { ...opts, augmentation });
    const c = await trainLocal(spec, start, data, { ...opts, seed: 5, augmentation });
    expect(sameBits(a.weights, b.weights)).toBe(true);
    expect(sameBits(a.weights, plain.weights)).toBe(false);
    expect(sameBits(a.weights, c.weights)).toBe(false);
    // Training must not augment the caller's data in place.
    expect(sameBits(data.images, brightSquareImages(24, 16, 6).images)).toBe(true);
  });

  describe('augmentBatch', () => {
    const size = 6;
    const source = (): Float32Array => Float32Array.from({ length: 4 * size * size }, (_, i) => i + 1);
    const image = (pixels: Float32Array, n: number): number[] => Array.from(pixels.subarray(n * size * size, (n + 1) * size * size));
    const flipH = (img: number[]): number[] => img.map((_, i) => img[Math.floor(i / size) * size + (size - 1 - (i % size))]!);
    const flipV = (img: number[]): number[] => img.map((_, i) => img[(size - 1 - Math.floor(i / size)) * size + (i % size)]!);

    it('leaves images unchanged when everything is off', () => {
      const pixels = source();
      augmentBatch(pixels, 4, size, size, 1, { flips: false, rotationDegrees: 0, intensityJitter: 0 }, createPrng(1));
      expect(Array.from(pixels)).toEqual(Array.from(source()));
    });

    it('flips produce mirror images, and both directions occur', () => {
      const seen = new Set<string>();
      for (let seed = 0; seed < 8; seed++) {
        const pixels = source();
        augmentBatch(pixels, 4, size, size, 1, { flips: true, rotationDegrees: 0, intensityJitter: 0 }, createPrng(seed));
        for (let n = 0; n < 4; n++) {
          const original = image(source(), n);
          const variants: Array<[string, number[]]> = [
            ['none', original],
            ['h', flipH(original)],
            ['v', flipV(original)],
            ['hv', flipH(flipV(original))],
          ];
          const match = variants.find(([, v]) => v.every((x, i) => x === image(pixels, n)[i]));
          expect(match).toBeDefined();
          seen.add(match![0]);
        }
      }
      expect(seen).toEqual(new Set(['none', 'h', 'v', 'hv']));
    });

    it('rotates by 90 degrees exactly at the limit of a quarter turn', () => {
      // A PRNG stuck at the top of its range draws +rotationDegrees.
      const top = { nextUint32: () => 0xffff_ffff, nextFloat: () => 1 };
      const pixels = source();
      augmentBatch(pixels, 1, size, size, 1, { flips: false, rotationDegrees: 90, intensityJitter: 0 }, top);
      const original = image(source(), 0);
      const rotated = image(pixels, 0);
      // Every value survives (a permutation), and it is neither the original nor a flip.
      expect([...rotated].sort((x, y) => x - y)).toEqual([...original].sort((x, y) => x - y));
      expect(rotated).not.toEqual(original);
      expect(rotated).not.toEqual(flipH(original));
      expect(rotated).not.toEqual(flipV(original));
    });

    it('intensity jitter is a bounded per-image affine change', () => {
      const pixels = source();
      augmentBatch(pixels, 4, size, size, 1, { flips: false, rotationDegrees: 0, intensityJitter: 0.2 }, createPrng(3));
      for (let n = 0; n < 4; n++) {
        const before = image(source(), n);
        const after = image(pixels, n);
        const scale = (after[1]! - after[0]!) / (before[1]! - before[0]!);
        const shift = after[0]! - scale * before[0]!;
        expect(Math.abs(scale - 1)).toBeLessThanOrEqual(0.2 + 1e-5);
        expect(Math.abs(shift)).toBeLessThanOrEqual(0.2 + 1e-4);
        before.forEach((v, i) => expect(after[i]).toBeCloseTo(v * scale + shift, 3));
      }
      expect(Array.from(pixels)).not.toEqual(Array.from(source()));
    });
  });

  it('refuses invalid options with clear messages', async () => {
    const data = brightSquareImages(4, 16, 7);
    const w = initialWeights(spec);
    const cases: Array<[Partial<TrainOptions>, RegExp]> = [
      [{ classWeights: [1] }, /classWeights must have one weight per class \(2\), got 1/],
      [{ classWeights: [1, 0] }, /classWeights\[1\] must be a finite number > 0, got 0/],
      [{ classWeights: [1, NaN] }, /classWeights\[1\] must be a finite number > 0/],
      [{ classWeights: 'uniform' as unknown as 'balanced' }, /classWeights must be 'balanced' or an array/],
      [{ proximalMu: -1 }, /proximalMu must be a finite number >= 0, got -1/],
      [{ proximalMu: Infinity }, /proximalMu/],
      [{ augmentation: { ...augmentation, rotationDegrees: 200 } }, /augmentation.rotationDegrees must be in \[0, 180\]/],
      [{ augmentation: { ...augmentation, intensityJitter: -0.1 } }, /augmentation.intensityJitter must be in \[0, 1\]/],
    ];
    for (const [bad, message] of cases) {
      const error = await trainLocal(spec, w, data, { ...opts, ...bad }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RangeError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('does not accumulate tensors or backend buffers with every option on', async () => {
    const data = brightSquareImages(24, 16, 8);
    const weights = initialWeights(spec);
    const all: TrainOptions = { ...opts, augmentation, classWeights: 'balanced', proximalMu: 0.1 };
    await trainLocal(spec, weights, data, all);
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) await trainLocal(spec, weights, data, { ...all, classWeights: [2, 1] });
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
  });
});
