import { describe, expect, it } from 'vitest';
import { exampleStudy, schemaIssues } from '../study/study.testkit.js';
import { studyDefinitionSchema } from '../study/index.js';
import { isStatisticsRound, roundPayloadLength, statisticsVectorLength, studyStatisticsPlan } from './index.js';

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
    expect(issues({ ...exampleStudy, statistics: {} })).toEqual(['statistics: asks for nothing: give intensity, features or both']);
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
});
