import { describe, expect, it } from 'vitest';
import { CLASSIFICATION_ARCHITECTURES } from '../model/index.js';
import { studyDefinitionSchema } from './index.js';
import { exampleStudy, schemaIssues } from './study.testkit.js';

const issues = (value: unknown): string[] => schemaIssues(studyDefinitionSchema, value);
const unet = { architecture: 'unet', inputSize: 64, channels: 1, classes: 2, seed: 1 };
const segmentationStudy = { ...exampleStudy, model: unet, classNames: ['background', 'lesion'] };

describe('study definition and architecture tasks', () => {
  it('accepts a segmentation study whose first class is the background, with its segmentation settings defaulted', () => {
    expect(issues(segmentationStudy)).toEqual([]);
    const parsed = studyDefinitionSchema.parse({ ...segmentationStudy, segmentation: {} });
    expect(parsed.segmentation).toEqual({ unmaskedImages: 'reject', loss: 'dice+cross-entropy' });
    expect(issues({ ...segmentationStudy, segmentation: { unmaskedImages: 'background', loss: 'dice' } })).toEqual([]);
  });

  it('refuses a segmentation study without the background first, with class weights or with differential privacy, naming the field', () => {
    expect(issues({ ...segmentationStudy, classNames: ['lesion', 'background'] })).toEqual([
      'classNames: of a segmentation study starts with "background" (mask value 0), then the segments; got "lesion" first',
    ]);
    expect(issues({ ...segmentationStudy, classWeights: 'balanced' })).toEqual([
      'classWeights: is for classification: a segmentation loss weighs the classes present in each image equally',
    ]);
    expect(issues({ ...segmentationStudy, privacy: { mode: 'site', clipNorm: 0.1, noiseMultiplier: 1 } })).toContain(
      'privacy: differential privacy is not available for segmentation models (unet) yet: remove privacy, or run a classification study',
    );
    expect(issues({ ...segmentationStudy, segmentation: { loss: 'focal' } })[0]).toMatch(/^segmentation\.loss: /);
  });

  it('refuses segmentation settings on a classification study', () => {
    expect(issues({ ...exampleStudy, segmentation: { loss: 'dice' } })).toEqual(['segmentation: applies to segmentation models only, and small-cnn is a classifier']);
  });

  it('takes a server optimizer with its defaults filled in, and refuses an unknown one', () => {
    const parsed = studyDefinitionSchema.parse({ ...exampleStudy, serverOptimizer: { kind: 'fedadam', learningRate: 0.1 } });
    expect(parsed.serverOptimizer).toEqual({ kind: 'fedadam', learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    expect(issues({ ...exampleStudy, serverOptimizer: { kind: 'fedsgd', learningRate: 1 } })[0]).toMatch(/^serverOptimizer\.kind: must be one of fedavgm, fedadagrad, fedadam, fedyogi/);
    expect(issues({ ...exampleStudy, aggregation: 'plaintext', serverOptimizer: { kind: 'fedavgm', learningRate: 1 } })).toEqual([
      'serverOptimizer: runs at the sites on the decrypted sum, and a plaintext study\'s coordinator publishes plain FedAvg itself: use aggregation multiparty or ckks',
    ]);
  });

  it.each(CLASSIFICATION_ARCHITECTURES)('accepts the classification architecture %s', (architecture) => {
    expect(issues({ ...exampleStudy, model: { ...exampleStudy.model, architecture } })).toEqual([]);
  });
});
