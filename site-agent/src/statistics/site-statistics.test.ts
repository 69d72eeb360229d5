import { describe, expect, it } from 'vitest';
import { decodeConsortiumStatistics, federation, modelFeatureStandardize, studyDefinitionSchema, studyStatisticsPlan, type LinearArchitectureSpec } from '@federa/shared';
import { PolicyRefusalError } from '../policy/index.js';
import { brightSquareImages, linearInputs } from '../train/index.js';
import { channelMoments, consortiumZScore, harmoniseChannels, modelFeatureColumns, siteStatisticsVector, UnsupportedStatisticError } from './index.js';

const definition = (statistics: unknown) =>
  studyDefinitionSchema.parse({
    name: 'overview',
    model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 1 },
    classNames: ['normal', 'lesion'],
    rounds: 1,
    minSites: 2,
    batchSize: 4,
    learningRate: 0.01,
    statistics,
  });

describe('a site\'s statistics round', () => {
  const siteA = brightSquareImages(12, 16, 1);
  const siteB = brightSquareImages(20, 16, 2);

  it('gives sums from which the consortium\'s pixel and feature statistics follow as if the images were pooled', () => {
    const def = definition({ intensity: { bins: 32 }, features: [{ name: 'firstorder_mean', min: 0, max: 1 }] });
    const plan = studyStatisticsPlan(def);
    const a = siteStatisticsVector(def, [siteA], 10);
    const b = siteStatisticsVector(def, [siteB], 10);
    const [intensity, mean] = decodeConsortiumStatistics(plan, a.map((v, i) => v + (b[i] as number)));
    const pixels = Float64Array.from([...siteA.images, ...siteB.images]);
    const pooledMean = pixels.reduce((x, y) => x + y, 0) / pixels.length;
    expect(intensity).toMatchObject({ feature: 'intensity', count: 32 * 256, units: 32 });
    expect(intensity!.mean).toBeCloseTo(pooledMean, 9);
    expect(intensity!.variance).toBeCloseTo(pixels.reduce((x, y) => x + (y - pooledMean) ** 2, 0) / (pixels.length - 1), 9);
    // Each image's mean intensity, once per image.
    expect(mean).toMatchObject({ feature: 'firstorder_mean', count: 32 });
    expect(mean!.mean).toBeCloseTo(pooledMean, 9);
  });

  it('gives the consortium moments of a linear model\'s inputs, which standardise the pooled inputs to mean 0 and std 1', async () => {
    const def = studyDefinitionSchema.parse({
      name: 'scaled',
      batchSize: 4,
      learningRate: 0.01,
      model: { architecture: 'logistic-regression', inputSize: 16, channels: 1, classes: 2, seed: 1, features: ['first-order', 'edges'] },
      classNames: ['normal', 'lesion'],
      rounds: 1,
      minSites: 2,
      statistics: { modelFeatures: true },
    });
    const plan = studyStatisticsPlan(def);
    const columnsA = await modelFeatureColumns(def, [siteA]);
    expect(columnsA).toHaveLength(25);
    expect(columnsA![0]).toHaveLength(siteA.count);
    const a = siteStatisticsVector(def, [siteA], 10, columnsA);
    const b = siteStatisticsVector(def, [siteB], 10, await modelFeatureColumns(def, [siteB]));
    const standardize = modelFeatureStandardize(def, decodeConsortiumStatistics(plan, a.map((v, i) => v + (b[i] as number))));
    // The pooled images through the model with the consortium's standardize: every defined feature centred and scaled.
    const spec = { ...(def.model as LinearArchitectureSpec), standardize };
    const pooled = brightSquareImages(32, 16, 3);
    pooled.images.set(siteA.images, 0);
    pooled.images.set(siteB.images, siteA.images.length);
    const { x, rows, columns } = await linearInputs(spec, pooled);
    expect(rows).toBe(32);
    for (let c = 0; c < columns; c++) {
      if (standardize.std[c] === 0) continue;
      let sum = 0;
      let squares = 0;
      for (let r = 0; r < rows; r++) sum += x[r * columns + c] as number;
      const mean = sum / rows;
      for (let r = 0; r < rows; r++) squares += ((x[r * columns + c] as number) - mean) ** 2;
      expect(mean, `feature ${c}`).toBeCloseTo(0, 6);
      expect(Math.sqrt(squares / (rows - 1)), `feature ${c}`).toBeCloseTo(1, 4);
    }
    await expect(modelFeatureColumns(definition({ intensity: {} }), [siteA])).resolves.toBeUndefined();
    expect(() => siteStatisticsVector(def, [siteA], 10)).toThrow(/model_feature_0: the model's features were not computed/);
  });

  it('refuses a statistic of fewer images than the policy\'s minimum, and a feature it does not compute', () => {
    const def = definition({ intensity: {} });
    const refusal = (() => {
      try {
        siteStatisticsVector(def, [siteA], 13);
      } catch (error) {
        return error;
      }
      return null;
    })();
    expect(refusal).toBeInstanceOf(PolicyRefusalError);
    expect((refusal as PolicyRefusalError).refusal).toEqual({
      reason: federation.RefusalReason.REFUSAL_REASON_STATISTICS_TOO_FEW,
      message: 'feature intensity: 12 images, fewer than the 13 this site shares a statistic of (policy.minStatisticsCount)',
    });
    expect(() => siteStatisticsVector(definition({ features: [{ name: 'firstorder_volume', min: 0, max: 1 }] }), [siteA], 1)).toThrow(UnsupportedStatisticError);
  });

  it('scales every channel to the consortium\'s mean and standard deviation', () => {
    const z = consortiumZScore(siteA, [{ mean: 0.5, std: 0.25 }]);
    expect(z.images[0]).toBeCloseTo(((siteA.images[0] as number) - 0.5) / 0.25, 6);
    expect(z.labels).toBe(siteA.labels);
    expect(() => consortiumZScore(siteA, [])).toThrow(/needs 1 channel statistics, got 0/);
  });

  it('harmonises a site onto the consortium\'s intensity distribution from its own moments', () => {
    // A scanner that reads everything twice as bright and offset: after harmonisation it matches the target moments.
    const bright = { ...siteA, images: siteA.images.map((v) => 2 * v + 0.1) };
    const own = channelMoments([bright], 1);
    const harmonised = harmoniseChannels(bright, own, [{ mean: 0.3, std: 0.2 }]);
    const [after] = channelMoments([harmonised], 1);
    expect(after!.mean).toBeCloseTo(0.3, 5);
    expect(after!.std).toBeCloseTo(0.2, 5);
    // The same images from the unshifted scanner land on the same values: the scanner's offset and gain are gone.
    const plain = harmoniseChannels(siteA, channelMoments([siteA], 1), [{ mean: 0.3, std: 0.2 }]);
    expect(Math.max(...harmonised.images.map((v, i) => Math.abs(v - (plain.images[i] as number))))).toBeLessThan(1e-5);
    expect(() => harmoniseChannels(siteA, own, [])).toThrow(/needs 1 target statistics, got 0/);
  });
});
