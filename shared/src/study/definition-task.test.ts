import { describe, expect, it } from 'vitest';
import { CLASSIFICATION_ARCHITECTURES } from '../model/index.js';
import { studyDefinitionSchema } from './index.js';
import { exampleStudy, schemaIssues } from './study.testkit.js';

const issues = (value: unknown): string[] => schemaIssues(studyDefinitionSchema, value);

describe('study definition and architecture tasks', () => {
  it('refuses a segmentation architecture, naming model.architecture, since no site can run it yet', () => {
    const model = { architecture: 'unet', inputSize: 64, channels: 1, classes: 2, seed: 1 };
    expect(issues({ ...exampleStudy, model })).toEqual([
      'model.architecture: segmentation studies are not supported yet: unet is a segmentation architecture, and sites can only train classification models (small-cnn, resnet, mobilenet)',
    ]);
  });

  it.each(CLASSIFICATION_ARCHITECTURES)('accepts the classification architecture %s', (architecture) => {
    expect(issues({ ...exampleStudy, model: { ...exampleStudy.model, architecture } })).toEqual([]);
  });
});
