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
