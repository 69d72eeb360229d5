import { applyAggregate, createPrng, largestChange, metricsFromScores, UpdateAccumulator, weightedUpdateVector } from '@federa/shared';
import { describe, expect, it } from 'vitest';
import {
  evaluateLinearModel,
  initialLinearParameters,
  linearObjective,
  linearParameterCount,
  predictLinearProbabilities,
  type LinearModelSpec,
} from './linear-models.js';
import { trainLinearModel } from './linear-train.js';
import { addFeatureSums, featureSums, Standardizer } from './standardize.js';

/** Gaussian blobs: class k centred at `separation`·e_(k mod features), unit noise; row-major rows x features. */
function blobs(classes: number, perClass: number, features: number, separation: number, seed: number) {
  const prng = createPrng(seed);
  const gaussian = (): number => Math.sqrt(-2 * Math.log(1 - prng.nextFloat())) * Math.cos(2 * Math.PI * prng.nextFloat());
  const x = new Float64Array(classes * perClass * features);
  const labels = new Int32Array(classes * perClass);
  for (let n = 0; n < labels.length; n++) {
    const k = n % classes;
    labels[n] = k;
    for (let f = 0; f < features; f++) x[n * features + f] = gaussian() + (f === k % features ? separation : 0) + 3;
  }
  return { x, labels };
}

const options = { epochs: 30, batchSize: 16, learningRate: 0.1, seed: 7 };

describe('linear models on standardised features', () => {
  for (const kind of ['logistic', 'svm'] as const) {
    for (const classes of [2, 3]) {
      it(`${kind} with ${classes} classes separates separable blobs (accuracy and AUC 1 through metricsFromScores)`, () => {
        const spec: LinearModelSpec = { kind, classes, features: 4 };
        const { x, labels } = blobs(classes, 40, 4, 8, 11 + classes);
        const z = Standardizer.fit(x, 4).transform(x);
        const result = trainLinearModel(spec, initialLinearParameters(spec), z, labels, options);
        expect(result.parameters).toHaveLength(linearParameterCount(spec));
        expect(result).toMatchObject({ accuracy: 1, samples: classes * 40, steps: 30 * Math.ceil((classes * 40) / 16) });
        const scores = predictLinearProbabilities(spec, result.parameters, z);
        for (let r = 0; r < labels.length; r++) {
          let sum = 0;
          for (let k = 0; k < classes; k++) sum += scores[r * classes + k]!;
          expect(sum).toBeCloseTo(1, 12);
        }
        const metrics = metricsFromScores(scores, labels, classes);
        expect(metrics.accuracy).toBe(1);
        expect(metrics.auc).toBe(1);
        expect(metrics.f1).toBe(1);
      });
    }
  }

  it('Adam trains too', () => {
    const spec: LinearModelSpec = { kind: 'logistic', classes: 3, features: 4 };
    const { x, labels } = blobs(3, 30, 4, 8, 5);
    const z = Standardizer.fit(x, 4).transform(x);
    const result = trainLinearModel(spec, initialLinearParameters(spec), z, labels, { ...options, optimizer: 'adam', learningRate: 0.05 });
    expect(result.accuracy).toBe(1);
    expect(result.loss).toBeLessThan(0.1);
  });

  for (const [kind, classes] of [
    ['logistic', 3],
    ['logistic', 2],
    ['svm', 3],
    ['svm', 2],
  ] as const) {
    it(`${kind} (${classes} classes) objective gradient matches central finite differences`, () => {
      const features = 5;
      const spec: LinearModelSpec = { kind, classes, features };
      const { x, labels } = blobs(classes, 7, features, 1, 99);
      const prng = createPrng(3);
      const params = Float64Array.from({ length: linearParameterCount(spec) }, () => prng.nextFloat() - 0.5);
      const opts = { l2: 0.3, rows: [0, 2, 3, 5, 8, 11, 13], classWeights: Array.from({ length: classes }, (_, k) => 0.5 + k) };
      const { gradient } = linearObjective(spec, params, x, labels, opts);
      const h = 1e-6;
      for (let k = 0; k < params.length; k++) {
        const plus = Float64Array.from(params);
        const minus = Float64Array.from(params);
        plus[k]! += h;
        minus[k]! -= h;
        const numeric = (linearObjective(spec, plus, x, labels, opts).loss - linearObjective(spec, minus, x, labels, opts).loss) / (2 * h);
        // The hinge is piecewise linear: away from its kinks (almost surely here) the difference is exact to rounding.
        expect(gradient[k], `parameter ${k}`).toBeCloseTo(numeric, 6);
      }
    });
  }

  it('is deterministic for a seed and shuffles differently for another', () => {
    const spec: LinearModelSpec = { kind: 'svm', classes: 3, features: 4 };
    const { x, labels } = blobs(3, 20, 4, 1.5, 21);
    const z = Standardizer.fit(x, 4).transform(x);
    const a = trainLinearModel(spec, initialLinearParameters(spec), z, labels, { ...options, epochs: 3 });
    const b = trainLinearModel(spec, initialLinearParameters(spec), z, labels, { ...options, epochs: 3 });
    const c = trainLinearModel(spec, initialLinearParameters(spec), z, labels, { ...options, epochs: 3, seed: 8 });
    expect(Array.from(b.parameters)).toEqual(Array.from(a.parameters));
    expect(Array.from(c.parameters)).not.toEqual(Array.from(a.parameters));
  });

  it('averages two sites with FedAvg through the update vector, and the average classifies both', () => {
    const spec: LinearModelSpec = { kind: 'logistic', classes: 2, features: 4 };
    const siteA = blobs(2, 30, 4, 6, 1);
    const siteB = blobs(2, 50, 4, 6, 2);
    // The consortium's statistics from both sites' sums, as the encrypted sum would give them.
    const standardizer = Standardizer.fromSums(addFeatureSums([featureSums(siteA.x, 4), featureSums(siteB.x, 4)]));
    const base = initialLinearParameters(spec);
    const a = trainLinearModel(spec, base, standardizer.transform(siteA.x), siteA.labels, options);
    const b = trainLinearModel(spec, base, standardizer.transform(siteB.x), siteB.labels, { ...options, seed: 9 });
    const sum = new UpdateAccumulator(base.length + 1);
    sum.add(weightedUpdateVector(base, a.parameters, a.samples));
    sum.add(weightedUpdateVector(base, b.parameters, b.samples));
    const global = applyAggregate(base, sum.sum);
    for (let k = 0; k < base.length; k++) {
      expect(global[k]).toBeCloseTo((60 * a.parameters[k]! + 100 * b.parameters[k]!) / 160, 5);
    }
    for (const site of [siteA, siteB]) {
      expect(evaluateLinearModel(spec, global, standardizer.transform(site.x), site.labels).accuracy).toBe(1);
    }
  });

  it('keeps every parameter within maxParameterChange of where it started', () => {
    const spec: LinearModelSpec = { kind: 'logistic', classes: 2, features: 4 };
    const { x, labels } = blobs(2, 40, 4, 8, 4);
    const z = Standardizer.fit(x, 4).transform(x);
    // Starting values that float32 cannot hold exactly, so start ± bound rounds either way.
    const start = Float32Array.from({ length: linearParameterCount(spec) }, (_, k) => 0.1 * k - 0.23);
    const free = trainLinearModel(spec, start, z, labels, { ...options, learningRate: 1, l2: 0 });
    expect(Math.max(...free.parameters.map((v, k) => Math.abs(v - start[k]!)))).toBeGreaterThan(1);
    for (const bound of [0.5, 1]) {
      const bounded = trainLinearModel(spec, start, z, labels, { ...options, learningRate: 1, l2: 0, maxParameterChange: bound });
      // What the encrypted sum checks (largestChange against MAX_WEIGHT_CHANGE = 1): exact, no rounding slack.
      expect(largestChange(start, bounded.parameters)).toBeLessThanOrEqual(bound);
      expect(largestChange(start, bounded.parameters)).toBeGreaterThan(bound - 1e-6);
      expect(bounded.accuracy).toBe(1);
    }
  });

  it('reads the parameters as the registry lays them out: kernel [features, outputs] row-major, then the biases', () => {
    const spec: LinearModelSpec = { kind: 'logistic', classes: 3, features: 2 };
    // kernel rows: feature 0 -> (1, 2, 3), feature 1 -> (10, 20, 30); biases (0.5, 0, -0.5).
    const params = [1, 2, 3, 10, 20, 30, 0.5, 0, -0.5];
    const [a, b] = [predictLinearProbabilities(spec, params, Float64Array.of(1, 0)), predictLinearProbabilities(spec, params, Float64Array.of(0, 0.1))];
    const softmax = (z: number[]) => z.map((v) => Math.exp(v) / z.reduce((sum, u) => sum + Math.exp(u), 0));
    expect(Array.from(a)).toEqual(softmax([1.5, 2, 2.5]).map((v) => expect.closeTo(v, 14)));
    expect(Array.from(b)).toEqual(softmax([1.5, 2, 2.5]).map((v) => expect.closeTo(v, 14)));
  });

  it('gives binary SVM scores as a softmax over (-margin, margin)', () => {
    const spec: LinearModelSpec = { kind: 'svm', classes: 2, features: 1 };
    // w = 2, b = -1: margins -1, 0, 1 for x = 0, 0.5, 1.
    const scores = predictLinearProbabilities(spec, [2, -1], Float64Array.of(0, 0.5, 1));
    const sigmoid = (m: number): number => 1 / (1 + Math.exp(-m));
    expect(Array.from(scores)).toEqual([sigmoid(2), sigmoid(-2), 0.5, 0.5, sigmoid(-2), sigmoid(2)].map((v) => expect.closeTo(v, 14)));
  });

  it('refuses wrong shapes, labels and options', () => {
    const spec: LinearModelSpec = { kind: 'logistic', classes: 3, features: 2 };
    const x = Float64Array.of(0, 1, 1, 0);
    expect(() => trainLinearModel(spec, new Float32Array(8), x, [0, 1], options)).toThrow(/parameters have 8 values, expected 9/);
    expect(() => trainLinearModel(spec, new Float32Array(9), x, [0, 3], options)).toThrow(/label 1 is 3/);
    expect(() => trainLinearModel(spec, new Float32Array(9), x, [0], options)).toThrow(/1 labels for 2 rows/);
    expect(() => trainLinearModel(spec, new Float32Array(9), Float64Array.of(0, Number.NaN, 1, 0), [0, 1], options)).toThrow(/impute/);
    expect(() => trainLinearModel(spec, new Float32Array(9), x, [0, 1], { ...options, batchSize: 0 })).toThrow(/batchSize/);
    expect(() => trainLinearModel({ ...spec, classes: 1 }, new Float32Array(9), x, [0, 1], options)).toThrow(/classes/);
    expect(() => trainLinearModel(spec, new Float32Array(9), x, [0, 1], { ...options, classWeights: [1, 2] })).toThrow(/2 weights for 3 classes/);
    expect(() => linearObjective(spec, new Float32Array(9), x, [0, 1], { rows: [2] })).toThrow(/batch row 0 is 2/);
  });
});

describe('Standardizer', () => {
  const x = Float64Array.of(1, 5, 10, 3, 5, 20, 5, 5, 30, 7, 5, 40);

  it('centres and scales with population statistics, leaving a constant feature at 0', () => {
    const s = Standardizer.fit(x, 3);
    expect(Array.from(s.mean)).toEqual([4, 5, 25]);
    expect(s.scale[0]).toBeCloseTo(Math.sqrt(5), 14);
    expect(s.scale[1]).toBe(1);
    const z = s.transform(x);
    expect(Array.from(z.filter((_, i) => i % 3 === 1))).toEqual([0, 0, 0, 0]);
    expect(z[0]).toBeCloseTo(-3 / Math.sqrt(5), 14);
  });

  it('gets the same statistics from summed site sums as from pooled data', () => {
    const pooled = Standardizer.fit(x, 3);
    const fromSums = Standardizer.fromSums(addFeatureSums([featureSums(x.subarray(0, 6), 3), featureSums(x.subarray(6), 3)]));
    for (let c = 0; c < 3; c++) {
      expect(fromSums.mean[c]).toBeCloseTo(pooled.mean[c]!, 12);
      expect(fromSums.scale[c]).toBeCloseTo(pooled.scale[c]!, 12);
    }
    const fromVariance = Standardizer.fromVariance([4, 5, 25], [5, 0, 125]);
    expect(Array.from(fromVariance.transform(x))).toEqual(Array.from(pooled.transform(x)));
  });

  it('refuses non-finite values and mismatched shapes', () => {
    expect(() => Standardizer.fit(Float64Array.of(1, Number.NaN), 2)).toThrow(/feature 1 of row 0 is NaN/);
    expect(() => Standardizer.fit(x, 5)).toThrow(/not a whole number of 5-feature rows/);
    expect(() => new Standardizer([0, 1], [1])).toThrow(/must match/);
    expect(() => new Standardizer([0], [-1])).toThrow(/std >= 0/);
  });
});
