import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyAggregate,
  CkksContext,
  initialWeights,
  UpdateAccumulator,
  weightedUpdateVector,
  type ModelSpec,
} from '@federa/shared';
import { brightSquareImages, initBackend, trainLocal, type LabeledImages } from './index.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 17 };
const ROUNDS = 3;
const LEARNING_RATE = 0.05;

function concat(parts: LabeledImages[]): LabeledImages {
  const first = parts[0] as LabeledImages;
  const images = new Float32Array(parts.reduce((n, p) => n + p.images.length, 0));
  const labels = new Int32Array(parts.reduce((n, p) => n + p.count, 0));
  let at = 0;
  let row = 0;
  for (const p of parts) {
    images.set(p.images, at);
    labels.set(p.labels, row);
    at += p.images.length;
    row += p.count;
  }
  return { images, labels, count: row, height: first.height, width: first.width, channels: first.channels };
}

/** One full-batch gradient step on the site's data: the FedSGD local update. */
const oneStep = (weights: Float32Array, data: LabeledImages) =>
  trainLocal(spec, weights, data, { epochs: 1, batchSize: data.count, learningRate: LEARNING_RATE, seed: 1, optimizer: 'sgd' });

/**
 * FedSGD equivalence: with one full-batch gradient step per round, averaging the sites' models weighted by their
 * sample counts is exactly a gradient step on the pooled data (the mean loss's gradient is the weighted mean of
 * the sites' gradients). Holding to 1e-5 over several rounds shows the federation adds nothing but float
 * rounding — also when the updates travel CKKS-encrypted.
 */
describe('FedSGD equals pooled gradient descent', () => {
  // Unequal sizes and class balance, so a wrong weighting would show.
  const sites = [brightSquareImages(12, 16, 1), brightSquareImages(20, 16, 2), brightSquareImages(7, 16, 3)];
  const pooled = concat(sites);
  let pooledWeights: Float32Array[];
  let ckks: CkksContext;
  let secretKey: Uint8Array;

  beforeAll(async () => {
    await initBackend('wasm');
    pooledWeights = [initialWeights(spec)];
    for (let round = 0; round < ROUNDS; round++) {
      pooledWeights.push((await oneStep(pooledWeights[round] as Float32Array, pooled)).weights);
    }
    ckks = await CkksContext.create();
    secretKey = ckks.generateKeys().secretKey;
  });

  afterAll(() => ckks?.dispose());

  const federated = async (aggregate: (vectors: Float32Array[]) => Float64Array): Promise<Float32Array> => {
    let weights = initialWeights(spec);
    for (let round = 0; round < ROUNDS; round++) {
      const vectors: Float32Array[] = [];
      for (const data of sites) {
        const result = await oneStep(weights, data);
        vectors.push(weightedUpdateVector(weights, result.weights, result.samples));
      }
      weights = applyAggregate(weights, aggregate(vectors));
    }
    return weights;
  };

  const maxDifference = (a: Float32Array, b: Float32Array): number =>
    a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);

  it('in the clear', async () => {
    const weights = await federated((vectors) => {
      const sum = new UpdateAccumulator((vectors[0] as Float32Array).length);
      for (const v of vectors) sum.add(v);
      return sum.sum;
    });
    const pooledFinal = pooledWeights[ROUNDS] as Float32Array;
    expect(maxDifference(weights, pooledFinal)).toBeLessThan(1e-5);
    // The steps were real: the model moved well beyond the tolerance.
    expect(maxDifference(pooledFinal, pooledWeights[0] as Float32Array)).toBeGreaterThan(1e-3);
  });

  it('through CKKS encryption', async () => {
    const weights = await federated((vectors) => {
      const accumulator = ckks.createAccumulator(ckks.publicParamsFor(secretKey));
      for (const v of vectors) accumulator.add(ckks.encryptVector(v, secretKey));
      return ckks.decryptVector(accumulator.result(), secretKey);
    });
    expect(maxDifference(weights, pooledWeights[ROUNDS] as Float32Array)).toBeLessThan(1e-5);
  });
});
