import { describe, expect, it } from 'vitest';
import {
  FEATURE_GROUP_SIZES,
  architectureFamily,
  describeParameters,
  initialWeights,
  isLinearArchitecture,
  linearFeatureCount,
  modelOutputShape,
  modelSpecFromMessage,
  modelSpecHash,
  modelSpecToMessage,
  parameterCount,
  parseModelSpec,
  type ModelSpec,
} from './index.js';

const base = { inputSize: 64, channels: 1, classes: 2, seed: 1 } as const;
const logistic: ModelSpec = { architecture: 'logistic-regression', ...base };

describe('linear models on image features', () => {
  it('lay out one weight per feature and output, then a bias per output (one output for two classes)', () => {
    expect(describeParameters(logistic)).toEqual([
      { name: 'linear/kernel', shape: [47, 1], init: 'zeros' },
      { name: 'linear/bias', shape: [1], init: 'zeros' },
    ]);
    expect(parameterCount(logistic)).toBe(48);
    // Three classes: one output each; three channels repeat each group per channel.
    const svm: ModelSpec = { architecture: 'linear-svm', ...base, channels: 3, classes: 3, features: ['glcm', 'lbp'] };
    expect(describeParameters(svm)).toEqual([
      { name: 'linear/kernel', shape: [3 * (12 + 10), 3], init: 'zeros' },
      { name: 'linear/bias', shape: [3], init: 'zeros' },
    ]);
    expect(parameterCount(svm)).toBe(66 * 3 + 3);
    expect(FEATURE_GROUP_SIZES).toEqual({ 'first-order': 19, edges: 6, glcm: 12, lbp: 10 });
    // Independent of the input size, as the feature vector is.
    expect(parameterCount({ ...logistic, inputSize: 256 })).toBe(48);
  });

  it('start from zeros whatever the seed, and pin the default spec hash', () => {
    const weights = initialWeights(logistic);
    expect(weights).toHaveLength(48);
    expect(weights.every((w) => w === 0)).toBe(true);
    expect(initialWeights({ ...logistic, seed: 99 })).toEqual(weights);
    // Every default is part of the hash sites approve: changing one is a new model.
    expect(modelSpecHash(logistic)).toBe('36074f6d554f102a0a1eed074ef7833a44b549ef65f644b28617c4c295dcd85b');
  });

  it('fill in the defaults, and take the feature groups in their fixed order only (one spelling per model)', () => {
    expect(parseModelSpec(logistic)).toEqual({
      ...logistic,
      features: ['first-order', 'edges', 'glcm', 'lbp'],
      region: 'image',
      histogramBins: 32,
      glcmLevels: 16,
      glcmDistances: [1],
      edgeThreshold: { relative: 0.25 },
      l2: 0.001,
    });
    expect(parseModelSpec({ ...logistic, features: ['first-order', 'lbp'] } as ModelSpec)).toMatchObject({ features: ['first-order', 'lbp'] });
    expect(() => parseModelSpec({ ...logistic, features: ['lbp', 'first-order'] } as ModelSpec)).toThrow('features must list groups in the order first-order, edges, glcm, lbp');
    expect(linearFeatureCount({ channels: 1, features: ['first-order', 'lbp'] })).toBe(29);
  });

  it('are classifiers of the linear family, with one output vector per image', () => {
    expect(architectureFamily('logistic-regression')).toBe('linear');
    expect(architectureFamily('small-cnn')).toBe('network');
    expect(isLinearArchitecture('linear-svm')).toBe(true);
    expect(isLinearArchitecture('unet')).toBe(false);
    expect(modelOutputShape({ ...logistic, classes: 4 })).toEqual([4]);
  });

  it('travel on the wire with every option and come back identical', () => {
    const spec = parseModelSpec({ architecture: 'linear-svm', ...base, region: 'mask', maskSegment: 'Lung', maskLabel: 2, glcmDistances: [1, 2], edgeThreshold: { absolute: 0.05 }, l2: 0.01 });
    const message = modelSpecToMessage(spec);
    expect(message.architecture).toBe('linear-svm');
    expect(modelSpecFromMessage(message)).toEqual(spec);
  });

  it('take consortium standardisation statistics of the right length', () => {
    const features = 6;
    const spec = { ...logistic, features: ['edges'], standardize: { mean: Array(features).fill(0), std: Array(features).fill(1) } } as ModelSpec;
    expect(parseModelSpec(spec)).toMatchObject({ standardize: { mean: Array(features).fill(0) } });
    expect(parameterCount(spec)).toBe(7);
  });

  it.each<[Record<string, unknown>, string]>([
    [{ features: [] }, 'features: features must name at least one group'],
    [{ features: ['lbp', 'lbp'] }, 'features: features lists a group twice'],
    [{ features: ['wavelets'] }, 'features.0: features must list groups among: first-order, edges, glcm, lbp'],
    [{ region: 'roi' }, "region: region must be 'image' or 'mask'"],
    [{ maskLabel: 1 }, "maskLabel: maskLabel applies only with region: 'mask'"],
    [{ maskSegment: 'lung' }, "maskSegment: maskSegment applies only with region: 'mask'"],
    [{ region: 'mask' }, "maskSegment: region: 'mask' needs maskSegment: the structure every image's mask outlines"],
    [{ region: 'mask', maskSegment: '  ' }, 'maskSegment: maskSegment must name a structure'],
    [{ glcmLevels: 1 }, 'glcmLevels: glcmLevels must be >= 2'],
    [{ l2: -1 }, 'l2: l2 must be >= 0'],
    [{ standardize: { mean: [0], std: [1] } }, 'standardize.mean: has 1 values but the model has 47 features (1 channel(s) x first-order, edges, glcm, lbp)'],
    [{ width: 8 }, 'Unrecognized key: "width"'],
  ])('refuse %j, naming the option', (options, message) => {
    expect(() => parseModelSpec({ ...logistic, ...options })).toThrow(message);
  });
});
