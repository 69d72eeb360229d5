import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  InvalidModelSpecError,
  WEIGHTS_LAYOUT_VERSION,
  createPrng,
  describeParameters,
  elementCount,
  initialWeights,
  modelSpecHash,
  modelSpecSchema,
  parameterCount,
  parseModelSpec,
  type ModelSpec,
  type ParameterShape,
} from './index.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 42 };

describe('describeParameters', () => {
  it('lists small-cnn tensors in layout-version-1 order with Keras shapes', () => {
    expect(WEIGHTS_LAYOUT_VERSION).toBe(1);
    expect(describeParameters(spec)).toEqual([
      { name: 'conv1/kernel', shape: [3, 3, 1, 16], init: 'glorot-uniform' },
      { name: 'conv1/bias', shape: [16], init: 'zeros' },
      { name: 'conv2/kernel', shape: [3, 3, 16, 32], init: 'glorot-uniform' },
      { name: 'conv2/bias', shape: [32], init: 'zeros' },
      { name: 'conv3/kernel', shape: [3, 3, 32, 32], init: 'glorot-uniform' },
      { name: 'conv3/bias', shape: [32], init: 'zeros' },
      // The global max pool leaves one value per conv3 channel, whatever the input size.
      { name: 'dense1/kernel', shape: [32, 32], init: 'glorot-uniform' },
      { name: 'dense1/bias', shape: [32], init: 'zeros' },
      { name: 'logits/kernel', shape: [32, 2], init: 'glorot-uniform' },
      { name: 'logits/bias', shape: [2], init: 'zeros' },
    ]);
  });

  it('follows channels and classes, and does not depend on the input size', () => {
    const params = describeParameters({ ...spec, inputSize: 50, channels: 3, classes: 5 });
    expect(params[0]?.shape).toEqual([3, 3, 3, 16]);
    expect(params[6]?.shape).toEqual([32, 32]);
    expect(parameterCount({ ...spec, inputSize: 200 })).toBe(parameterCount(spec));
    expect(params[8]?.shape).toEqual([32, 5]);
    expect(params[9]?.shape).toEqual([5]);
  });

  it('parameterCount is the sum of the shapes and the initial vector has that length', () => {
    const expected = 3 * 3 * 1 * 16 + 16 + 3 * 3 * 16 * 32 + 32 + 3 * 3 * 32 * 32 + 32 + 32 * 32 + 32 + 32 * 2 + 2;
    expect(parameterCount(spec)).toBe(expected);
    expect(describeParameters(spec).reduce((n, p) => n + elementCount(p.shape), 0)).toBe(expected);
    expect(initialWeights(spec).length).toBe(expected);
  });
});

describe('initialWeights', () => {
  it('is deterministic for a spec', () => {
    const a = initialWeights(spec);
    const b = initialWeights({ ...spec });
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });

  it('is pinned across machines and releases (first values of seed 42)', () => {
    // Golden values: if this changes, weight vectors from older agents no longer match; bump WEIGHTS_LAYOUT_VERSION.
    const w = initialWeights(spec);
    expect(Array.from(w.slice(0, 4))).toEqual(GOLDEN_SEED42_HEAD);
    expect(createHash('sha256').update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)).digest('hex')).toBe(
      GOLDEN_SEED42_SHA256,
    );
  });

  it('differs for different seeds', () => {
    const a = initialWeights(spec);
    const b = initialWeights({ ...spec, seed: 43 });
    let differing = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differing++;
    // Biases are zero in both; nearly every kernel entry must differ.
    expect(differing).toBeGreaterThan(a.length * 0.9);
  });

  it('draws kernels from glorot-uniform bounds and zeroes biases', () => {
    const w = initialWeights(spec);
    let offset = 0;
    for (const p of describeParameters(spec)) {
      const values = w.subarray(offset, offset + elementCount(p.shape));
      offset += values.length;
      if (p.init === 'zeros') {
        expect(values.every((v) => v === 0)).toBe(true);
        continue;
      }
      const receptive = elementCount(p.shape.slice(0, -2));
      const fanIn = p.shape[p.shape.length - 2]! * receptive;
      const fanOut = p.shape[p.shape.length - 1]! * receptive;
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      const maxAbs = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxAbs).toBeLessThanOrEqual(limit);
      // A uniform sample of this size reaches close to the bound, so the scale is right, not merely bounded.
      expect(maxAbs).toBeGreaterThan(limit * 0.8);
      const mean = values.reduce((s, v) => s + v, 0) / values.length;
      expect(Math.abs(mean)).toBeLessThan(limit * 0.25);
    }
  });
});

describe('modelSpecSchema / parseModelSpec', () => {
  it('accepts a valid spec', () => {
    expect(modelSpecSchema.parse(spec)).toEqual(spec);
    expect(parseModelSpec({ ...spec, channels: 3, inputSize: 512, seed: 0xffffffff })).toMatchObject({ channels: 3 });
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['unknown architecture', { ...spec, architecture: 'resnet-9000' }, /architecture/],
    ['missing architecture', { inputSize: 64, channels: 1, classes: 2, seed: 1 }, /architecture/],
    ['inputSize too small', { ...spec, inputSize: 8 }, /inputSize/],
    ['inputSize too large', { ...spec, inputSize: 1024 }, /inputSize/],
    ['inputSize not an integer', { ...spec, inputSize: 64.5 }, /inputSize/],
    ['channels 2', { ...spec, channels: 2 }, /channels/],
    ['one class', { ...spec, classes: 1 }, /classes/],
    ['negative seed', { ...spec, seed: -1 }, /seed/],
    ['seed beyond uint32', { ...spec, seed: 2 ** 32 }, /seed/],
    ['seed as a string', { ...spec, seed: '7' }, /seed/],
    ['unknown field', { ...spec, input_size: 64 }, /input_size/],
  ];
  it.each(bad)('rejects %s, naming the field', (_label, input, field) => {
    const result = modelSpecSchema.safeParse(input);
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((i) => i.message).join('\n')).toMatch(field);
    expect(() => parseModelSpec(input)).toThrow(InvalidModelSpecError);
    expect(() => parseModelSpec(input)).toThrow(field);
  });

  it('guards the helpers against specs that bypassed the type system', () => {
    const invalid = { ...spec, classes: 0 } as ModelSpec;
    expect(() => describeParameters(invalid)).toThrow(/classes/);
    expect(() => initialWeights(invalid)).toThrow(/classes/);
    expect(() => modelSpecHash(invalid)).toThrow(/classes/);
  });
});

describe('modelSpecHash', () => {
  it('is a SHA-256 hex digest independent of key order', () => {
    const reordered = { seed: 42, classes: 2, channels: 1, inputSize: 64, architecture: 'small-cnn' } as const;
    expect(modelSpecHash(spec)).toMatch(/^[0-9a-f]{64}$/);
    expect(modelSpecHash(reordered)).toBe(modelSpecHash(spec));
  });

  it('changes with every field', () => {
    const base = modelSpecHash(spec);
    for (const variant of [{ inputSize: 32 }, { channels: 3 as const }, { classes: 3 }, { seed: 43 }]) {
      expect(modelSpecHash({ ...spec, ...variant })).not.toBe(base);
    }
  });
});

const resnet: ModelSpec = { architecture: 'resnet', inputSize: 64, channels: 1, classes: 2, seed: 42 };
const mobilenet: ModelSpec = { architecture: 'mobilenet', inputSize: 64, channels: 1, classes: 2, seed: 42 };

/** Every grayscale/RGB and binary/multi-class combination of an architecture. */
function variants(base: ModelSpec): ModelSpec[] {
  return [
    { ...base, channels: 1, classes: 2 },
    { ...base, channels: 1, classes: 5 },
    { ...base, channels: 3, classes: 2 },
    { ...base, channels: 3, classes: 5 },
  ];
}

function sizeOf(params: ParameterShape[]): number {
  return params.reduce((n, p) => n + elementCount(p.shape), 0);
}

describe('resnet', () => {
  it('fills in its defaults (width 16, blocks [2, 2, 2]) and hashes them like an explicit spec', () => {
    expect(parseModelSpec(resnet)).toEqual({ ...resnet, width: 16, blocksPerStage: [2, 2, 2] });
    expect(modelSpecHash(resnet)).toBe(modelSpecHash({ ...resnet, width: 16, blocksPerStage: [2, 2, 2] }));
    expect(modelSpecHash({ ...resnet, width: 8 })).not.toBe(modelSpecHash(resnet));
    expect(modelSpecHash({ ...resnet, blocksPerStage: [2, 2] })).not.toBe(modelSpecHash(resnet));
    // Parsed specs must not share the default array.
    const a = parseModelSpec(resnet);
    const b = parseModelSpec(resnet);
    expect(a.architecture === 'resnet' && b.architecture === 'resnet' && a.blocksPerStage !== b.blocksPerStage).toBe(true);
  });

  it('lists stem, residual blocks (conv1, conv2, projection shortcut) and head in order', () => {
    expect(describeParameters({ ...resnet, width: 4, blocksPerStage: [1, 1] })).toEqual([
      { name: 'stem/kernel', shape: [3, 3, 1, 4], init: 'he-uniform' },
      { name: 'stem/bias', shape: [4], init: 'zeros' },
      // Identity shortcut: same filters, stride 1.
      { name: 's1b1_conv1/kernel', shape: [3, 3, 4, 4], init: 'he-uniform' },
      { name: 's1b1_conv1/bias', shape: [4], init: 'zeros' },
      // The branch's last convolution starts at zero so the block starts as its shortcut.
      { name: 's1b1_conv2/kernel', shape: [3, 3, 4, 4], init: 'zeros' },
      { name: 's1b1_conv2/bias', shape: [4], init: 'zeros' },
      // Stride 2 and twice the filters: a 1x1 projection shortcut.
      { name: 's2b1_conv1/kernel', shape: [3, 3, 4, 8], init: 'he-uniform' },
      { name: 's2b1_conv1/bias', shape: [8], init: 'zeros' },
      { name: 's2b1_conv2/kernel', shape: [3, 3, 8, 8], init: 'zeros' },
      { name: 's2b1_conv2/bias', shape: [8], init: 'zeros' },
      { name: 's2b1_shortcut/kernel', shape: [1, 1, 4, 8], init: 'he-uniform' },
      { name: 's2b1_shortcut/bias', shape: [8], init: 'zeros' },
      { name: 'logits/kernel', shape: [8, 2], init: 'glorot-uniform' },
      { name: 'logits/bias', shape: [2], init: 'zeros' },
    ]);
  });

  it('has about 174k parameters at the defaults, independent of the input size', () => {
    // stem 160; stage 1: 2 blocks of 2 x (3*3*16*16 + 16); stage 2: 3*3*16*32+32, 3*3*32*32+32, 16*32+32, then
    // 2 x (3*3*32*32 + 32); stage 3 likewise at 64; head 64*2 + 2.
    const expected = 160 + 4 * 2320 + (4640 + 9248 + 544 + 2 * 9248) + (18496 + 36928 + 2112 + 2 * 36928) + 130;
    expect(parameterCount(resnet)).toBe(expected);
    expect(expected).toBe(173_890);
    expect(parameterCount({ ...resnet, inputSize: 200 })).toBe(expected);
    expect(parameterCount({ ...resnet, blocksPerStage: [1, 1, 1] })).toBe(76_898);
  });

  it.each(variants(resnet))('follows channels $channels and classes $classes', (spec) => {
    const params = describeParameters(spec);
    expect(params[0]?.shape).toEqual([3, 3, spec.channels, 16]);
    expect(params.at(-2)?.shape).toEqual([64, spec.classes]);
    expect(params.at(-1)?.shape).toEqual([spec.classes]);
    expect(initialWeights(spec).length).toBe(sizeOf(params));
  });

  it('grows one stage per blocksPerStage entry, doubling the filters', () => {
    const params = describeParameters({ ...resnet, width: 8, blocksPerStage: [1, 3, 1, 2] });
    const blocks = new Set(params.map((p) => p.name.split('_')[0]).filter((n) => /^s\db\d$/.test(n!)));
    expect([...blocks]).toEqual(['s1b1', 's2b1', 's2b2', 's2b3', 's3b1', 's4b1', 's4b2']);
    expect(params.find((p) => p.name === 's4b2_conv2/kernel')?.shape).toEqual([3, 3, 64, 64]);
    // Only the first block of stages 2-4 projects its shortcut.
    expect(params.filter((p) => p.name.endsWith('_shortcut/kernel')).map((p) => p.name)).toEqual([
      's2b1_shortcut/kernel',
      's3b1_shortcut/kernel',
      's4b1_shortcut/kernel',
    ]);
  });
});

describe('mobilenet', () => {
  it('fills in its default alpha 0.5 and hashes it like an explicit spec', () => {
    expect(parseModelSpec(mobilenet)).toEqual({ ...mobilenet, alpha: 0.5 });
    expect(modelSpecHash(mobilenet)).toBe(modelSpecHash({ ...mobilenet, alpha: 0.5 }));
    expect(modelSpecHash({ ...mobilenet, alpha: 1 })).not.toBe(modelSpecHash(mobilenet));
  });

  it('lists stem, depthwise/pointwise pairs and head in order', () => {
    const params = describeParameters({ ...mobilenet, alpha: 0.25 });
    expect(params.map((p) => `${p.name} ${p.shape.join('x')} ${p.init}`)).toEqual([
      'stem/kernel 3x3x1x8 he-uniform',
      'stem/bias 8 zeros',
      'b1_dw/depthwise_kernel 3x3x8x1 depthwise-he-uniform',
      'b1_dw/bias 8 zeros',
      'b1_pw/kernel 1x1x8x16 he-uniform',
      'b1_pw/bias 16 zeros',
      'b2_dw/depthwise_kernel 3x3x16x1 depthwise-he-uniform',
      'b2_dw/bias 16 zeros',
      'b2_pw/kernel 1x1x16x32 he-uniform',
      'b2_pw/bias 32 zeros',
      'b3_dw/depthwise_kernel 3x3x32x1 depthwise-he-uniform',
      'b3_dw/bias 32 zeros',
      'b3_pw/kernel 1x1x32x32 he-uniform',
      'b3_pw/bias 32 zeros',
      'b4_dw/depthwise_kernel 3x3x32x1 depthwise-he-uniform',
      'b4_dw/bias 32 zeros',
      'b4_pw/kernel 1x1x32x64 he-uniform',
      'b4_pw/bias 64 zeros',
      'b5_dw/depthwise_kernel 3x3x64x1 depthwise-he-uniform',
      'b5_dw/bias 64 zeros',
      'b5_pw/kernel 1x1x64x64 he-uniform',
      'b5_pw/bias 64 zeros',
      'b6_dw/depthwise_kernel 3x3x64x1 depthwise-he-uniform',
      'b6_dw/bias 64 zeros',
      'b6_pw/kernel 1x1x64x128 he-uniform',
      'b6_pw/bias 128 zeros',
      'logits/kernel 128x2 glorot-uniform',
      'logits/bias 2 zeros',
    ]);
  });

  it('has about 70k parameters at the default alpha, scaling with alpha and independent of the input size', () => {
    expect(parameterCount(mobilenet)).toBe(69_666);
    expect(parameterCount({ ...mobilenet, inputSize: 300 })).toBe(69_666);
    expect(parameterCount({ ...mobilenet, alpha: 0.25 })).toBe(18_834);
    expect(parameterCount({ ...mobilenet, alpha: 1 })).toBe(267_330);
  });

  it.each(variants(mobilenet))('follows channels $channels and classes $classes', (spec) => {
    const params = describeParameters(spec);
    expect(params[0]?.shape).toEqual([3, 3, spec.channels, 16]);
    expect(params.at(-2)?.shape).toEqual([256, spec.classes]);
    expect(initialWeights(spec).length).toBe(sizeOf(params));
  });
});

describe('initialWeights of resnet and mobilenet', () => {
  const all = [...variants(resnet), ...variants(mobilenet)];

  it.each(all)('is deterministic for $architecture ($channels channels, $classes classes), and the seed matters', (spec) => {
    const a = initialWeights(spec);
    expect(Buffer.from(a.buffer).equals(Buffer.from(initialWeights({ ...spec }).buffer))).toBe(true);
    const b = initialWeights({ ...spec, seed: spec.seed + 1 });
    let randomised = 0;
    let differing = 0;
    let offset = 0;
    for (const p of describeParameters(spec)) {
      const size = elementCount(p.shape);
      if (p.init !== 'zeros') {
        randomised += size;
        for (let i = offset; i < offset + size; i++) if (a[i] !== b[i]) differing++;
      }
      offset += size;
    }
    // Zero-initialised residual branches leave resnet a little under half random.
    expect(randomised).toBeGreaterThan(a.length * 0.4);
    expect(differing).toBeGreaterThan(randomised * 0.99);
  });

  it.each([resnet, mobilenet])('draws each $architecture tensor from its own init kind and bounds', (spec) => {
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
      const receptive = elementCount(p.shape.slice(0, -2));
      const fanIn = p.shape.at(-2)! * receptive;
      const fanOut = p.shape.at(-1)! * receptive;
      const limit = {
        'glorot-uniform': Math.sqrt(6 / (fanIn + fanOut)),
        'he-uniform': Math.sqrt(6 / fanIn),
        'depthwise-he-uniform': Math.sqrt(6 / receptive),
      }[p.init];
      const maxAbs = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxAbs, p.name).toBeLessThanOrEqual(limit);
      // Small tensors (a 3x3x1x16 stem) still reach well into the range; big ones come close to the bound.
      expect(maxAbs, p.name).toBeGreaterThan(limit * (values.length >= 100 ? 0.9 : 0.6));
    }
    expect(kinds).toEqual(new Set(spec.architecture === 'resnet' ? ['he-uniform', 'zeros', 'glorot-uniform'] : ['he-uniform', 'zeros', 'glorot-uniform', 'depthwise-he-uniform']));
  });

  it('is pinned across machines and releases (seed 42)', () => {
    // Golden digests: if one changes, weight vectors from older agents no longer match; bump WEIGHTS_LAYOUT_VERSION.
    const digest = (spec: ModelSpec): string => {
      const w = initialWeights(spec);
      return createHash('sha256').update(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)).digest('hex');
    };
    expect(digest(resnet)).toBe('5dbf309ee87f0fef2a26f0690cee5c804a06cc55df40ec0d05dfafc38109d9ba');
    expect(digest(mobilenet)).toBe('aa7e14e342ace7333e71fb5ad88b5aa36f98aaf6b34da422f36c63b74e60f178');
  });
});

describe('resnet and mobilenet spec validation', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['resnet width too small', { ...resnet, width: 2 }, /width must be >= 4/],
    ['resnet width too large', { ...resnet, width: 128 }, /width must be <= 64/],
    ['resnet width not an integer', { ...resnet, width: 12.5 }, /width must be an integer/],
    ['resnet width as a string', { ...resnet, width: '16' }, /width must be a number/],
    ['resnet without stages', { ...resnet, blocksPerStage: [] }, /blocksPerStage must list at least one stage/],
    ['resnet with five stages', { ...resnet, blocksPerStage: [1, 1, 1, 1, 1] }, /blocksPerStage must list at most 4 stages/],
    ['resnet stage without blocks', { ...resnet, blocksPerStage: [2, 0] }, /blocksPerStage entries must be >= 1/],
    ['resnet stage with too many blocks', { ...resnet, blocksPerStage: [5] }, /blocksPerStage entries must be <= 4/],
    ['resnet fractional block count', { ...resnet, blocksPerStage: [1.5] }, /blocksPerStage entries must be integers/],
    ['resnet blocksPerStage not an array', { ...resnet, blocksPerStage: 2 }, /blocksPerStage must be an array/],
    ['resnet with a mobilenet option', { ...resnet, alpha: 0.5 }, /alpha/],
    ['resnet with a bad base field', { ...resnet, channels: 4 }, /channels must be 1 or 3/],
    ['mobilenet alpha not in the set', { ...mobilenet, alpha: 0.3 }, /alpha must be one of 0.25, 0.5, 0.75, 1/],
    ['mobilenet alpha as a string', { ...mobilenet, alpha: '0.5' }, /alpha must be one of/],
    ['mobilenet with a resnet option', { ...mobilenet, width: 16 }, /width/],
    ['mobilenet with a bad base field', { ...mobilenet, classes: 1 }, /classes must be >= 2/],
  ];
  it.each(bad)('rejects %s, naming the field', (_label, input, message) => {
    expect(() => parseModelSpec(input)).toThrow(InvalidModelSpecError);
    expect(() => parseModelSpec(input)).toThrow(message);
    const field = message.source.match(/^\w+/)![0];
    // The path prefix names the field too, e.g. "blocksPerStage.1: ...", as does the refusal of a foreign option.
    expect(() => parseModelSpec(input)).toThrow(new RegExp(`invalid model spec: (${field}|Unrecognized key: "${field}")`));
  });

  it('lists the new architectures among the valid ones', () => {
    expect(() => parseModelSpec({ ...resnet, architecture: 'resnet50' })).toThrow('architecture must be one of: small-cnn, resnet, mobilenet');
  });
});

describe('createPrng', () => {
  it('reproduces its stream and stays in [0, 1)', () => {
    const a = createPrng(7);
    const b = createPrng(7);
    for (let i = 0; i < 1000; i++) {
      const x = a.nextFloat();
      expect(x).toBe(b.nextFloat());
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
  });

  it('rejects seeds that are not uint32', () => {
    expect(() => createPrng(-1)).toThrow(RangeError);
    expect(() => createPrng(1.5)).toThrow(RangeError);
  });
});

const GOLDEN_SEED42_HEAD = [-0.1007097065448761, 0.029874837026000023, -0.057075560092926025, 0.061960164457559586];
const GOLDEN_SEED42_SHA256 = 'f5ab82156867a570eaae327d52f48319e847c065ef57fdf26cb6d73fad8ec04d';
