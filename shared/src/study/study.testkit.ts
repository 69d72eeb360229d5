import type { z } from 'zod';
import { describeIssues } from './definition.js';

/** A valid study definition the study tests vary one field at a time. */
export const exampleStudy = {
  name: 'lesion',
  model: { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 1 },
  classNames: ['normal', 'lesion'],
  rounds: 5,
  minSites: 2,
  localEpochs: 2,
  batchSize: 16,
  learningRate: 0.001,
};

/** The "field: message" lines a schema reports for a value; empty when the value is valid. */
export function schemaIssues(schema: z.ZodType, value: unknown): string[] {
  const parsed = schema.safeParse(value);
  return parsed.success ? [] : describeIssues(parsed.error);
}
