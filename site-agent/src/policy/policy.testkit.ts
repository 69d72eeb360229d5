import { studyDefinitionSchema, type StudyDefinition } from '@federa/shared';

/** A small valid study for the policy and gate tests; `overrides` sets what a test is about. */
export function testStudy(overrides: Record<string, unknown> = {}): StudyDefinition {
  return studyDefinitionSchema.parse({
    name: 'lesion',
    model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 1 },
    classNames: ['normal', 'lesion'],
    rounds: 3,
    minSites: 3,
    localEpochs: 1,
    batchSize: 4,
    learningRate: 0.01,
    ...overrides,
  });
}
