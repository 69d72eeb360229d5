import { afterAll, describe, expect, it } from 'vitest';
import { initialWeights, type ModelSpec } from '@federa/shared';
import { closeTrainingThreads, initBackend, trainLocal, type LabeledImages } from '@federa/site-agent';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 4 };

/** Noisy images whose label is whether the centre is bright: something to learn, reproducible. */
function images(count: number, seed: number): LabeledImages {
  let state = seed >>> 0;
  const next = (): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const size = spec.inputSize;
  const pixels = new Float32Array(count * size * size);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    labels[n] = n % 2;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const centre = Math.abs(y - size / 2) < 3 && Math.abs(x - size / 2) < 3;
        pixels[(n * size + y) * size + x] = 0.3 * next() + (centre && labels[n] === 1 ? 0.6 : 0);
      }
    }
  }
  return { images: pixels, labels, count, height: size, width: size, channels: 1 };
}

const maxDifference = (a: Float32Array, b: Float32Array): number => a.reduce((worst, v, i) => Math.max(worst, Math.abs(v - (b[i] as number))), 0);

/**
 * Data-parallel local training: each thread computes the gradient of a slice of every batch, the slices' gradients
 * are summed in thread order and one optimiser step is taken. With one thread or several, the arithmetic is the
 * same but for the order of float32 sums, so the trained weights agree to float rounding, compounded over the steps.
 */
describe('training on several threads', () => {
  afterAll(() => closeTrainingThreads());

  it('trains the same model as one thread, to float rounding, and each thread count reproduces itself bit for bit', async () => {
    expect((await initBackend('auto')).name).toBe('wasm');
    const data = images(40, 9);
    const start = initialWeights(spec);
    // Adam, a last batch smaller than the others, augmentation, class weights and FedProx: every path of a step.
    const options = {
      epochs: 3,
      batchSize: 16,
      learningRate: 0.01,
      optimizer: 'adam' as const,
      seed: 5,
      augmentation: { flips: true, rotationDegrees: 10, intensityJitter: 0.1 },
      classWeights: [1, 2],
      proximalMu: 0.01,
    };
    const one = await trainLocal(spec, start, data, options);
    const two = await trainLocal(spec, start, data, { ...options, threads: 2 });
    const three = await trainLocal(spec, start, data, { ...options, threads: 3 });
    expect([one.threads, two.threads, three.threads]).toEqual([1, 2, 3]);
    expect(two.steps).toBe(one.steps);
    // The steps moved the weights far more than the threads' rounding differs: 9 Adam steps of 0.01 each.
    const moved = maxDifference(one.weights, start);
    expect(moved).toBeGreaterThan(0.05);
    // The slices' float32 sums differ from the whole batch's by a few ulps (~1e-7 relative). SGD carries that as is
    // (about 1e-8 here); Adam divides each update by the gradient's own running scale, so a weight whose gradient is
    // near zero can move up to ~lr differently in a step. Measured: under 4e-7 after these 9 steps; the bound leaves
    // a factor of 25 while staying 5000 times below how far training moved the weights.
    expect(maxDifference(two.weights, one.weights)).toBeLessThan(1e-5);
    expect(maxDifference(three.weights, one.weights)).toBeLessThan(1e-5);
    expect(Math.abs(two.loss - one.loss)).toBeLessThan(1e-5);
    expect(two.accuracy).toBe(one.accuracy);
    const sgd = { ...options, optimizer: 'sgd' as const, learningRate: 0.05 };
    const sgdOne = await trainLocal(spec, start, data, sgd);
    expect(maxDifference((await trainLocal(spec, start, data, { ...sgd, threads: 2 })).weights, sgdOne.weights)).toBeLessThan(1e-6);
    // Threads kept between trainings: the same count again gives the same bits.
    const again = await trainLocal(spec, start, data, { ...options, threads: 2 });
    expect(Buffer.from(again.weights.buffer).equals(Buffer.from(two.weights.buffer))).toBe(true);
  });

  it('trains with DP-SGD, each thread clipping its slice\'s examples, and still learns', async () => {
    const data = images(96, 12);
    const result = await trainLocal(spec, initialWeights(spec), data, {
      epochs: 8,
      batchSize: 16,
      learningRate: 0.01,
      optimizer: 'adam',
      seed: 1,
      threads: 2,
      privacy: { clipNorm: 1, noiseMultiplier: 0.5 },
    });
    expect(result.threads).toBe(2);
    expect(result.privacy).toMatchObject({ steps: 8 * 6, sampleRate: 16 / 96 });
    expect(result.privacy!.clippedFraction).toBeGreaterThan(0);
    expect(result.accuracy).toBeGreaterThan(0.7);
  });

  it('trains a segmentation model (masks in shared memory, per-image Dice loss) the same on two threads as on one', async () => {
    const unet = { architecture: 'unet', inputSize: 16, channels: 1, classes: 2, seed: 2, width: 4, depth: 2 } as const;
    const data = images(24, 13);
    // The mask is the bright centre of the lesion images.
    const masks = new Uint8Array(24 * 16 * 16);
    for (let n = 0; n < 24; n++) {
      for (let i = 0; i < 256; i++) masks[n * 256 + i] = data.labels[n] === 1 && Math.abs(Math.floor(i / 16) - 8) < 3 && Math.abs((i % 16) - 8) < 3 ? 1 : 0;
    }
    const options = { epochs: 2, batchSize: 8, learningRate: 0.01, optimizer: 'adam' as const, seed: 3 };
    const one = await trainLocal(unet, initialWeights(unet), { ...data, masks }, { ...options, threads: 1 });
    const two = await trainLocal(unet, initialWeights(unet), { ...data, masks }, { ...options, threads: 2 });
    expect(two.threads).toBe(2);
    // Adam over 6 steps: the same tolerance as the classification case above.
    expect(maxDifference(one.weights, two.weights)).toBeLessThan(1e-5);
    expect(two.accuracy).toBeCloseTo(one.accuracy, 4);
  });

  it('uses one thread per image when a batch is smaller than the thread count, and takes bad thread counts as errors', async () => {
    const data = images(3, 2);
    const start = initialWeights(spec);
    const result = await trainLocal(spec, start, data, { steps: 2, batchSize: 3, learningRate: 0.05, seed: 1, threads: 4 });
    const single = await trainLocal(spec, start, data, { steps: 2, batchSize: 3, learningRate: 0.05, seed: 1 });
    expect(result.threads).toBe(4);
    expect(maxDifference(result.weights, single.weights)).toBeLessThan(1e-6);
    await expect(trainLocal(spec, start, data, { steps: 1, batchSize: 3, learningRate: 0.05, seed: 1, threads: 0 })).rejects.toThrow(/invalid training options: threads must be an integer in \[1, 256\], got 0/);
  });
});
