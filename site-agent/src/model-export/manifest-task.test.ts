import { describeIssues, preprocessingSchema } from '@federa/shared';
import { describe, expect, it } from 'vitest';
import { exportManifestSchema } from './manifest.js';

const hash = 'a'.repeat(64);
const manifest = {
  format: 'federa-model',
  version: 1,
  studyId: 'study-1',
  studyName: 'lesion',
  studyHash: hash,
  round: 3,
  model: { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 1 },
  classNames: ['normal', 'lesion'],
  preprocessing: preprocessingSchema.parse({}),
  input: { layout: 'NHWC', dtype: 'float32', shape: [64, 64, 1] },
  output: 'softmax',
  weights: { sha256: hash, parameters: 100, layoutVersion: 1 },
  files: { modelJson: 'model.json', shards: [{ path: 'group1-shard1of1.bin', bytes: 400, sha256: hash }] },
  pipeline: { preprocessVersion: 1, vips: '8.15.0', hash },
  exportedAt: '2025-01-01T00:00:00.000Z',
  exportedBy: { siteId: 'hospital-a', agentVersion: '0.1.0' },
};

const issues = (value: unknown): string[] => {
  const parsed = exportManifestSchema.safeParse(value);
  return parsed.success ? [] : describeIssues(parsed.error);
};

describe('export manifest and architecture tasks', () => {
  it('accepts a classification model', () => {
    expect(issues(manifest)).toEqual([]);
  });

  it('refuses a linear model on image features, which has no TensorFlow.js graph to run', () => {
    const model = { ...manifest.model, architecture: 'logistic-regression' };
    expect(issues({ ...manifest, model })).toEqual(['model.architecture: is logistic-regression, a linear model on image features: it has no TensorFlow.js graph to export or run']);
  });

  it('refuses a segmentation model, whose per-pixel output it cannot describe', () => {
    const model = { ...manifest.model, architecture: 'unet' };
    expect(issues({ ...manifest, model })).toEqual(['model.architecture: is unet, a segmentation model: exports of segmentation models are not supported yet']);
  });
});
