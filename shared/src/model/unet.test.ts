import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ARCHITECTURE_NAMES,
  CLASSIFICATION_ARCHITECTURES,
  InvalidModelSpecError,
  architectureTask,
  describeParameters,
  elementCount,
  initialWeights,
  isClassificationArchitecture,
  modelOutputShape,
  modelSpecFromMessage,
  modelSpecHash,
  modelSpecToMessage,
  parameterCount,
  parseModelSpec,
  unetLayers,
  type ModelSpec,
  type UnetSpec,
} from './index.js';

const unet: ModelSpec = { architecture: 'unet', inputSize: 64, channels: 1, classes: 2, seed: 42 };

const sha256 = (w: Float32Array): string => createHash('sha256').update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)).digest('hex');

describe('unet spec', () => {
  it('fills in its defaults (width 16, depth 3) and hashes them like an explicit spec', () => {
    expect(parseModelSpec(unet)).toEqual({ ...unet, width: 16, depth: 3 });
    expect(modelSpecHash(unet)).toBe(modelSpecHash({ ...unet, width: 16, depth: 3 }));
    expect(modelSpecHash({ ...unet, width: 8 })).not.toBe(modelSpecHash(unet));
    expect(modelSpecHash({ ...unet, depth: 2 })).not.toBe(modelSpecHash(unet));
  });

  it('travels on the wire with its options', () => {
    const message = modelSpecToMessage({ ...unet, width: 8, depth: 2 });
    expect(message.optionsJson).toBe('{"depth":2,"width":8}');
    expect(modelSpecFromMessage(message)).toEqual({ ...unet, width: 8, depth: 2 });
  });

  const bad: Array<[string, unknown, string | RegExp]> = [
    ['inputSize not divisible by 2^depth', { ...unet, inputSize: 100 }, 'inputSize: inputSize 100 is not divisible by 2^3 = 8 (depth 3)'],
    ['inputSize not divisible at depth 5', { ...unet, inputSize: 48, depth: 5 }, 'inputSize 48 is not divisible by 2^5 = 32 (depth 5)'],
    ['width too small', { ...unet, width: 2 }, /width: width must be >= 4/],
    ['width too large', { ...unet, width: 128 }, /width: width must be <= 64/],
    ['width not an integer', { ...unet, width: 12.5 }, /width: width must be an integer/],
    ['depth 0', { ...unet, depth: 0 }, /depth: depth must be >= 1/],
    ['depth 6', { ...unet, depth: 6 }, /depth: depth must be <= 5/],
    ['depth as a string', { ...unet, depth: '3' }, /depth: depth must be a number/],
    ['one class (the background must be a class of its own)', { ...unet, classes: 1 }, /classes: classes must be >= 2/],
    ['a resnet option', { ...unet, blocksPerStage: [1] }, /blocksPerStage/],
  ];
  it.each(bad)('rejects %s, naming the field', (_label, input, message) => {
    expect(() => parseModelSpec(input)).toThrow(InvalidModelSpecError);
    expect(() => parseModelSpec(input)).toThrow(message);
  });

  it('accepts every input size that the depth divides', () => {
    expect(parseModelSpec({ ...unet, inputSize: 96 })).toMatchObject({ inputSize: 96 });
    expect(parseModelSpec({ ...unet, inputSize: 20, depth: 2 })).toMatchObject({ inputSize: 20 });
    expect(parseModelSpec({ ...unet, inputSize: 512, depth: 5 })).toMatchObject({ depth: 5 });
  });
});

describe('unet layers and parameters', () => {
  it('lists encoder, bottleneck, decoder (up-convolution, skip, two convolutions) and head in order', () => {
    const spec = parseModelSpec({ ...unet, inputSize: 16, channels: 3, classes: 3, width: 4, depth: 1 }) as UnetSpec;
    expect(unetLayers(spec).map((l) => ('name' in l ? `${l.kind} ${l.name}` : `${l.kind} ${'level' in l ? l.level : l.poolSize}`))).toEqual([
      'conv2d enc1_conv1',
      'conv2d enc1_conv2',
      'saveSkip 1',
      'maxPool2d 2',
      'conv2d bottleneck_conv1',
      'conv2d bottleneck_conv2',
      'conv2dTranspose dec1_up',
      'concatSkip 1',
      'conv2d dec1_conv1',
      'conv2d dec1_conv2',
      'conv2d logits',
    ]);
    expect(describeParameters(spec).map((p) => `${p.name} ${p.shape.join('x')} ${p.init}`)).toEqual([
      'enc1_conv1/kernel 3x3x3x4 he-uniform',
      'enc1_conv1/bias 4 zeros',
      'enc1_conv2/kernel 3x3x4x4 he-uniform',
      'enc1_conv2/bias 4 zeros',
      'bottleneck_conv1/kernel 3x3x4x8 he-uniform',
      'bottleneck_conv1/bias 8 zeros',
      'bottleneck_conv2/kernel 3x3x8x8 he-uniform',
      'bottleneck_conv2/bias 8 zeros',
      // Transposed-convolution kernels are [kh, kw, outC, inC]: 8 bottleneck channels up to 4.
      'dec1_up/kernel 2x2x4x8 transposed-he-uniform',
      'dec1_up/bias 4 zeros',
      // 4 upsampled channels and the 4 of the skip.
      'dec1_conv1/kernel 3x3x8x4 he-uniform',
      'dec1_conv1/bias 4 zeros',
      'dec1_conv2/kernel 3x3x4x4 he-uniform',
      'dec1_conv2/bias 4 zeros',
      'logits/kernel 1x1x4x3 glorot-uniform',
      'logits/bias 3 background-prior',
    ]);
  });

  it('doubles the filters per level and halves them back in the decoder', () => {
    const params = describeParameters({ ...unet, width: 8, depth: 4 });
    const shape = (name: string): number[] | undefined => params.find((p) => p.name === name)?.shape;
    expect(shape('enc4_conv2/kernel')).toEqual([3, 3, 64, 64]);
    expect(shape('bottleneck_conv2/kernel')).toEqual([3, 3, 128, 128]);
    expect(shape('dec4_up/kernel')).toEqual([2, 2, 64, 128]);
    expect(shape('dec4_conv1/kernel')).toEqual([3, 3, 128, 64]);
    expect(shape('dec1_up/kernel')).toEqual([2, 2, 8, 16]);
    expect(shape('dec1_conv2/kernel')).toEqual([3, 3, 8, 8]);
    expect(params.filter((p) => p.name.endsWith('_up/kernel')).map((p) => p.name)).toEqual(['dec4_up/kernel', 'dec3_up/kernel', 'dec2_up/kernel', 'dec1_up/kernel']);
  });

  it('has 481,762 parameters at the defaults, whatever the input size, and grows with width and depth', () => {
    // Encoder 2,480 + 13,888 + 55,424; bottleneck 221,440; decoder 143,552 + 35,936 + 9,008; head 16 * 2 + 2.
    expect(parameterCount(unet)).toBe(2_480 + 13_888 + 55_424 + 221_440 + 143_552 + 35_936 + 9_008 + 34);
    expect(parameterCount(unet)).toBe(481_762);
    expect(parameterCount({ ...unet, inputSize: 256 })).toBe(481_762);
    expect(parameterCount({ ...unet, width: 8, depth: 2 })).toBe(29_330);
    expect(parameterCount({ ...unet, width: 32, depth: 4, channels: 3, classes: 4 })).toBe(7_760_196);
    expect(parameterCount({ ...unet, width: 4, depth: 1 })).toBe(1_650);
  });
});

describe('unet initial weights', () => {
  it('are deterministic for a spec, and the seed matters for every random tensor', () => {
    const a = initialWeights(unet);
    expect(sha256(initialWeights({ ...unet }))).toBe(sha256(a));
    const b = initialWeights({ ...unet, seed: 43 });
    let offset = 0;
    for (const p of describeParameters(unet)) {
      const size = elementCount(p.shape);
      const differing = a.subarray(offset, offset + size).filter((v, i) => v !== b[offset + i]).length;
      // The constant kinds are the same for every seed.
      expect(differing, p.name).toBe(p.init === 'zeros' || p.init === 'background-prior' ? 0 : size);
      offset += size;
    }
  });

  it('are pinned across machines and releases (seed 42)', () => {
    // Golden digest: if it changes, unet weight vectors from older agents no longer match; bump WEIGHTS_LAYOUT_VERSION.
    expect(sha256(initialWeights(unet))).toBe(UNET_SEED42_SHA256);
  });

  it('draw each tensor from its init kind and bounds; the up-convolution counts inC as its fan-in', () => {
    const spec: ModelSpec = { ...unet, width: 8, depth: 2, channels: 3, classes: 4 };
    const w = initialWeights(spec);
    let offset = 0;
    const kinds = new Set<string>();
    for (const p of describeParameters(spec)) {
      const values = w.subarray(offset, offset + elementCount(p.shape));
      offset += values.length;
      kinds.add(p.init);
      if (p.init === 'zeros') {
        expect(values.every((v) => v === 0), p.name).toBe(true);
        continue;
      }
      if (p.init === 'background-prior') {
        // ln 99 for the background, 0 for the three other classes: softmax 99/102 and 1/102 at every pixel.
        expect(Array.from(values)).toEqual([Math.fround(Math.log(99)), 0, 0, 0]);
        continue;
      }
      const [kh, kw, a, b] = p.shape as [number, number, number, number];
      const limit = {
        'he-uniform': Math.sqrt(6 / (kh * kw * a)),
        // [kh, kw, outC, inC], stride = kernel: one tap per output pixel over the inC input channels.
        'transposed-he-uniform': Math.sqrt(6 / b),
        'glorot-uniform': Math.sqrt(6 / (kh * kw * (a + b))),
        'depthwise-he-uniform': NaN,
      }[p.init];
      const maxAbs = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxAbs, p.name).toBeLessThanOrEqual(limit);
      expect(maxAbs, p.name).toBeGreaterThan(limit * (values.length >= 100 ? 0.9 : 0.6));
    }
    expect(kinds).toEqual(new Set(['he-uniform', 'zeros', 'transposed-he-uniform', 'glorot-uniform', 'background-prior']));
  });
});

describe('architecture tasks', () => {
  it('registers unet as the one segmentation architecture', () => {
    expect(ARCHITECTURE_NAMES).toEqual(['small-cnn', 'resnet', 'mobilenet', 'unet', 'logistic-regression', 'linear-svm']);
    expect(CLASSIFICATION_ARCHITECTURES).toEqual(['small-cnn', 'resnet', 'mobilenet', 'logistic-regression', 'linear-svm']);
    expect(ARCHITECTURE_NAMES.map((a) => architectureTask(a as 'unet'))).toEqual(['classification', 'classification', 'classification', 'segmentation', 'classification', 'classification']);
    expect(isClassificationArchitecture('unet')).toBe(false);
    expect(isClassificationArchitecture('resnet')).toBe(true);
    expect(() => architectureTask('toString' as 'unet')).toThrow('unknown architecture toString');
  });

  it('gives the per-example output shape: [classes], or [H, W, classes] for segmentation', () => {
    expect(modelOutputShape(unet)).toEqual([64, 64, 2]);
    expect(modelOutputShape({ ...unet, inputSize: 32, classes: 5, depth: 2 })).toEqual([32, 32, 5]);
    expect(modelOutputShape({ architecture: 'resnet', inputSize: 64, channels: 1, classes: 3, seed: 1 })).toEqual([3]);
    expect(() => modelOutputShape({ ...unet, inputSize: 100 })).toThrow(/not divisible/);
  });
});

const UNET_SEED42_SHA256 = 'cf34e021c5cdd34307e4324f622fddbaf0d35e64f9ec06672741c5dfb91df744';
