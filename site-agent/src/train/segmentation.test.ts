import { createPrng, initialWeights, parseModelSpec, type ModelSpec } from '@federa/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import { augmentBatch } from './augment.js';
import { evaluateModel, initBackend, predictProbabilities, trainLocal, TrainingDataError } from './index.js';
import type { SegmentationImages } from './segmentation.js';

const spec: ModelSpec = { architecture: 'unet', inputSize: 32, channels: 1, classes: 2, seed: 3, width: 8, depth: 2 };

/** Noise with a bright square (random place and size) in every image but one in four; the mask is the square. */
function squares(count: number, size: number, seed: number): SegmentationImages {
  const prng = createPrng(seed);
  const images = new Float32Array(count * size * size);
  const masks = new Uint8Array(count * size * size);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    for (let i = 0; i < size * size; i++) images[n * size * size + i] = 0.3 * prng.nextFloat();
    if (n % 4 === 3) continue;
    labels[n] = 1;
    const side = 5 + Math.floor(prng.nextFloat() * 8);
    const top = Math.floor(prng.nextFloat() * (size - side));
    const left = Math.floor(prng.nextFloat() * (size - side));
    for (let y = top; y < top + side; y++) {
      for (let x = left; x < left + side; x++) {
        images[n * size * size + y * size + x] = 0.7 + 0.3 * prng.nextFloat();
        masks[n * size * size + y * size + x] = 1;
      }
    }
  }
  return { images, labels, masks, count, height: size, width: size, channels: 1 };
}

describe('segmentation training', () => {
  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  it('learns to outline bright squares: held-out Dice well above an empty prediction\'s', async () => {
    const train = squares(64, 32, 1);
    const heldOut = squares(24, 32, 2);
    const start = initialWeights(spec);
    const before = await evaluateModel(spec, start, heldOut);
    const result = await trainLocal(spec, start, train, { epochs: 12, batchSize: 8, learningRate: 0.01, optimizer: 'adam', seed: 4 });
    const after = await evaluateModel(spec, result.weights, heldOut);
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.accuracy).toBeGreaterThan(0.75);
    expect(result.accuracy).toBeGreaterThan(0.6);
    const probs = await predictProbabilities(spec, result.weights, heldOut);
    expect(probs.length).toBe(24 * 32 * 32 * 2);
    // Softmax over the classes at every pixel.
    expect(probs[0]! + probs[1]!).toBeCloseTo(1, 5);
  });

  it('needs a mask per image with classes the model has, and refuses what it cannot do yet', async () => {
    const data = squares(4, 32, 5);
    const weights = initialWeights(spec);
    const opts = { epochs: 1, batchSize: 4, learningRate: 0.01, seed: 1 };
    await expect(trainLocal(spec, weights, { ...data, masks: undefined }, opts)).rejects.toThrow(TrainingDataError);
    await expect(trainLocal(spec, weights, { ...data, masks: undefined }, opts)).rejects.toThrow(/a unet model trains on masks: the data has none/);
    await expect(trainLocal(spec, weights, { ...data, masks: data.masks!.subarray(1) }, opts)).rejects.toThrow(/masks hold 4095 values but 4 images of 32x32 need 4096/);
    const bad = data.masks!.slice();
    bad[32 * 32 + 5] = 2;
    await expect(evaluateModel(spec, weights, { ...data, masks: bad })).rejects.toThrow(/image 1's mask has class 2 at pixel 5, outside \[0, 2\)/);
    await expect(trainLocal(spec, weights, data, { ...opts, privacy: { clipNorm: 1, noiseMultiplier: 1 } })).rejects.toThrow(/privacy \(DP-SGD\) are not supported for a segmentation model/);
    await expect(trainLocal(spec, weights, data, { ...opts, classWeights: 'balanced' })).rejects.toThrow(/classWeights are not supported for a segmentation model/);
  });

  it('moves the masks with their images through flips and rotations, never through intensity changes', () => {
    const size = 9;
    const count = 3;
    // Each image encodes its pixel positions; its mask marks an asymmetric L.
    const pixels = new Float32Array(count * size * size);
    const masks = new Uint8Array(count * size * size);
    for (let n = 0; n < count; n++) {
      for (let i = 0; i < size * size; i++) {
        pixels[n * size * size + i] = i + 1;
        const y = Math.floor(i / size);
        const x = i % size;
        masks[n * size * size + i] = (x === 2 && y < 6) || (y === 5 && x < 5) ? 1 : 0;
      }
    }
    augmentBatch(pixels, count, size, size, 1, { flips: true, rotationDegrees: 30, intensityJitter: 0 }, createPrng(7), masks);
    for (let n = 0; n < count; n++) {
      for (let i = 0; i < size * size; i++) {
        const from = pixels[n * size * size + i]!;
        // 0: the rotation brought in a pixel from outside, where the mask is background too.
        const expected = from === 0 ? 0 : (() => {
          const j = from - 1;
          const y = Math.floor(j / size);
          const x = j % size;
          return (x === 2 && y < 6) || (y === 5 && x < 5) ? 1 : 0;
        })();
        expect(masks[n * size * size + i]).toBe(expected);
      }
    }
  });

  it('parses the spec before anything trains', () => {
    expect(() => parseModelSpec({ ...spec, inputSize: 30 })).toThrow(/not divisible by 2\^2 = 4/);
  });
});
