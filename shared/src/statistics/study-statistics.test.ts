import { describe, expect, it } from 'vitest';
import { exampleStudy, schemaIssues } from '../study/study.testkit.js';
import { studyDefinitionSchema } from '../study/index.js';
import { isStatisticsRound, modelFeatureStandardize, roundPayloadLength, statisticsVectorLength, studyStatisticsPlan } from './index.js';

const issues = (value: unknown): string[] => schemaIssues(studyDefinitionSchema, value);

describe('a study\'s statistics round', () => {
  it('lays out intensity per channel in images of the preprocessed grid, then the features, and is round 1 only', () => {
    const def = studyDefinitionSchema.parse({
      ...exampleStudy,
      model: { ...exampleStudy.model, channels: 3, inputSize: 32 },
      statistics: { intensity: { bins: 16 }, features: [{ name: 'glcm_contrast', min: 0, max: 50 }], featureBins: 8 },
    });
    const plan = studyStatisticsPlan(def);
    expect(plan.columns.map((c) => [c.feature, c.bins, c.per])).toEqual([
      ['intensity_c0', 16, 1024],
      ['intensity_c1', 16, 1024],
      ['intensity_c2', 16, 1024],
      ['glcm_contrast', 8, 1],
    ]);
    expect(isStatisticsRound(def, 1)).toBe(true);
    expect(isStatisticsRound(def, 2)).toBe(false);
    expect(roundPayloadLength(def, 1, 5000)).toBe(statisticsVectorLength(plan));
    expect(roundPayloadLength(def, 2, 5000)).toBe(5000);
    expect(roundPayloadLength(studyDefinitionSchema.parse(exampleStudy), 1, 5000)).toBe(5000);
  });

  it('runs without local training settings when the study is statistics only', () => {
    const { localEpochs: _epochs, ...noWork } = exampleStudy;
    expect(issues({ ...noWork, rounds: 1, statistics: { intensity: {} } })).toEqual([]);
    expect(issues({ ...noWork, rounds: 3, statistics: { intensity: {} } })).toEqual([
      'localEpochs: is required unless localSteps is given: give exactly one of localEpochs (full passes) or localSteps (optimiser steps)',
    ]);
  });

  it('refuses an empty section, a z-score without intensity, plaintext aggregation and bad ranges, naming the field', () => {
    expect(issues({ ...exampleStudy, statistics: {} })).toEqual(['statistics: asks for nothing: give intensity, features, modelFeatures or several']);
    expect(issues({ ...exampleStudy, statistics: { features: [{ name: 'firstorder_mean', min: 0, max: 1 }], zScore: true } })).toEqual([
      'statistics.zScore: needs statistics.intensity: the z-score uses the consortium\'s intensity mean and standard deviation',
    ]);
    expect(issues({ ...exampleStudy, statistics: { features: [{ name: 'firstorder_mean', min: 0, max: 1 }], harmonise: true } })).toEqual([
      'statistics.harmonise: needs statistics.intensity: harmonisation maps each site onto the consortium\'s intensity mean and standard deviation',
    ]);
    expect(issues({ ...exampleStudy, aggregation: 'plaintext', statistics: { intensity: {} } })[0]).toMatch(/^statistics: needs an encrypted aggregation/);
    expect(issues({ ...exampleStudy, statistics: { intensity: { min: 1, max: 1 } } })).toEqual(['statistics.intensity.max: max must be greater than min']);
    expect(issues({ ...exampleStudy, statistics: { features: [{ name: 'Glcm Contrast', min: 0, max: 1 }] } })[0]).toMatch(/^statistics\.features\.0\.name: a feature name is 1-64 characters/);
  });

  const linearStudy = { ...exampleStudy, model: { architecture: 'logistic-regression', inputSize: 32, channels: 1, classes: 2, seed: 1, features: ['first-order', 'edges'] } };

  it('adds a column per input of a linear model with modelFeatures, and standardises with their consortium moments', () => {
    const def = studyDefinitionSchema.parse({ ...linearStudy, statistics: { intensity: { bins: 4 }, modelFeatures: true, featureBins: 8 } });
    const plan = studyStatisticsPlan(def);
    // 19 first-order and 6 edge features for one channel, after the intensity column.
    expect(plan.columns).toHaveLength(1 + 25);
    expect(plan.columns.slice(1).map((c) => c.feature)).toEqual(Array.from({ length: 25 }, (_, i) => `model_feature_${i}`));
    expect(plan.columns.slice(1).every((c) => c.bins === 8 && c.per === 1 && c.min === -2 && c.max === 2)).toBe(true);
    const stats = Array.from({ length: 25 }, (_, i) => ({ feature: `model_feature_${i}`, mean: i / 10, std: 1 + i }));
    const standardize = modelFeatureStandardize(def, [{ feature: 'intensity', mean: 0.2, std: 0.1 }, ...stats.reverse()]);
    expect(standardize.mean).toEqual(Array.from({ length: 25 }, (_, i) => i / 10));
    expect(standardize.std).toEqual(Array.from({ length: 25 }, (_, i) => 1 + i));
    expect(() => modelFeatureStandardize(def, stats.slice(1))).toThrow(/no mean and standard deviation of model feature 24/);
    expect(() => modelFeatureStandardize(def, stats.map((f) => ({ ...f, std: null })))).toThrow(/model feature 0/);
  });

  it('refuses modelFeatures without a linear model, beside a given standardize, or with zScore or harmonise', () => {
    expect(issues({ ...exampleStudy, statistics: { modelFeatures: true } })).toEqual([
      'statistics.modelFeatures: needs a logistic-regression or linear-svm model: it standardises the features such a model reads',
    ]);
    const given = { ...linearStudy, model: { ...linearStudy.model, standardize: { mean: new Array(25).fill(0), std: new Array(25).fill(1) } } };
    expect(issues({ ...given, statistics: { modelFeatures: true } })).toEqual([
      'statistics.modelFeatures: the model already gives standardize: drop one of the two (modelFeatures computes it from the consortium)',
    ]);
    expect(issues({ ...linearStudy, statistics: { intensity: {}, modelFeatures: true, harmonise: true } })[0]).toMatch(/^statistics\.modelFeatures: cannot be combined with zScore or harmonise/);
    expect(issues({ ...linearStudy, statistics: { modelFeatures: true, features: [{ name: 'model_feature_0', min: 0, max: 1 }] } })).toEqual([
      'statistics.features.0.name: "model_feature_" names the columns of statistics.modelFeatures; give the feature its extractor name (e.g. firstorder_mean)',
    ]);
    expect(issues({ ...linearStudy, statistics: { modelFeatures: true } })).toEqual([]);
  });
});
