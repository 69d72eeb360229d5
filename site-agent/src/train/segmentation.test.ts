import { createPrng, initialWeights, parseModelSpec, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { augmentBatch } from './augment.js';
import { buildModel, evaluateModel, initBackend, predictProbabilities, trainLocal, TrainingDataError } from './index.js';
import { segmentationLoss, SegmentationSliceGradients } from './parallel/segmentation-gradients.js';
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

describe('segmentation gradients', () => {
  const small: ModelSpec = { architecture: 'unet', inputSize: 16, channels: 1, classes: 2, seed: 5, width: 4, depth: 2 };
  const data = squares(4, 16, 8);
  const slice = { pixels: data.images, labels: data.labels, masks: data.masks!, count: data.count, height: 16, width: 16, channels: 1 };

  beforeAll(async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
  });

  /** The slice source's gradient, and that of segmentationLoss on the model's own softmax output (clipped log). */
  function bothGradients(weights: Float32Array): { source: Float32Array; fromProbabilities: Float32Array } {
    const model = buildModel(small, weights);
    try {
      const source = new Float32Array(weights.length);
      new SegmentationSliceGradients(model, 2).compute(slice, source);
      const variables = model.weights.map((w) => w.read() as tf.Variable);
      const fromProbabilities = tf.tidy(() => {
        const xs = tf.tensor4d(data.images, [data.count, 16, 16, 1]);
        const ys = tf.tensor3d(Int32Array.from(data.masks!), [data.count, 16, 16], 'int32');
        const { grads } = tf.variableGrads(() => tf.sum(segmentationLoss(model.apply(xs) as tf.Tensor4D, ys, 2).perImage) as tf.Scalar, variables);
        return Float32Array.from(variables.flatMap((v) => Array.from(grads[v.name]!.dataSync())));
      });
      return { source, fromProbabilities };
    } finally {
      model.dispose();
    }
  }

  it('are those of the loss on the model\'s probabilities while the softmax is not saturated', () => {
    const { source, fromProbabilities } = bothGradients(initialWeights(small));
    let scale = 1e-3;
    let diff = 0;
    fromProbabilities.forEach((g, i) => {
      scale = Math.max(scale, Math.abs(g));
      diff = Math.max(diff, Math.abs(source[i]! - g));
    });
    expect(diff / scale).toBeLessThan(1e-4);
  });

  it('still pull a softmax saturated to background towards the lesions, where the clipped log gave nothing', () => {
    // A background bias of 200 makes every lesion probability exactly 0 in float32.
    const weights = initialWeights(small);
    weights[weights.length - 2] = 200;
    const { source, fromProbabilities } = bothGradients(weights);
    const lesionBias = weights.length - 1;
    expect(fromProbabilities[lesionBias]).toBe(0);
    // d(mean cross-entropy)/d(lesion bias) = mean(p − truth) per image = −(the image's lesion share) at p = 0; the soft
    // Dice term has none left through a saturated softmax.
    let share = 0;
    for (let n = 0; n < data.count; n++) share += data.masks!.subarray(n * 256, (n + 1) * 256).reduce((a, m) => a + m, 0) / 256;
    expect(share).toBeGreaterThan(0);
    expect(source[lesionBias]).toBeCloseTo(-share, 5);
  });

  it('start from a head that calls nearly every pixel background, where a zero bias said 50:50', async () => {
    const median = async (weights: Float32Array): Promise<number> => {
      const probs = await predictProbabilities(small, weights, data);
      return probs.filter((_, i) => i % 2 === 1).sort()[probs.length / 4]!;
    };
    // The background bias ln 99 less the spread of the random head kernel over the features.
    expect(await median(initialWeights(small))).toBeLessThan(0.05);
    const zeroBias = initialWeights(small);
    zeroBias[zeroBias.length - 2] = 0;
    expect(await median(zeroBias)).toBeGreaterThan(0.3);
  });
});
