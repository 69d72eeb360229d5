import { describeParameters, initialWeights, parameterCount, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, getFlatWeights, initBackend, setFlatWeights } from './index.js';

const specs: ModelSpec[] = [
  { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 1 },
  { architecture: 'small-cnn', inputSize: 50, channels: 3, classes: 5, seed: 2 },
];

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('buildModel', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it.each(specs)('has weights matching describeParameters one-to-one ($inputSize x $inputSize x $channels)', (spec) => {
    const model = buildModel(spec);
    try {
      expect(model.weights.map((w) => w.read().shape)).toEqual(describeParameters(spec).map((p) => p.shape));
      expect(model.countParams()).toBe(parameterCount(spec));
      expect(model.outputs[0]!.shape).toEqual([null, spec.classes]);
    } finally {
      model.dispose();
    }
  });

  it('starts from the spec deterministic initial weights unless given others', () => {
    const spec = specs[0]!;
    const model = buildModel(spec);
    try {
      expect(sameBits(getFlatWeights(model), initialWeights(spec))).toBe(true);
    } finally {
      model.dispose();
    }
    const custom = initialWeights({ ...spec, seed: 99 });
    const seeded = buildModel(spec, custom);
    try {
      expect(sameBits(getFlatWeights(seeded), custom)).toBe(true);
    } finally {
      seeded.dispose();
    }
  });

  it('outputs class probabilities', () => {
    const spec = specs[1]!;
    const model = buildModel(spec);
    try {
      const sums = tf.tidy(() => {
        const probs = model.predict(tf.randomUniform([3, 50, 50, 3], 0, 1, 'float32', 7)) as tf.Tensor2D;
        expect(probs.shape).toEqual([3, 5]);
        return Array.from(tf.sum(probs, 1).dataSync());
      });
      for (const s of sums) expect(s).toBeCloseTo(1, 5);
    } finally {
      model.dispose();
    }
  });
});

/** resnet and mobilenet in every grayscale/RGB x binary/multi-class combination, at default and custom options. */
const architectures: ModelSpec[] = [
  { architecture: 'resnet', inputSize: 64, channels: 1, classes: 2, seed: 3 },
  { architecture: 'resnet', inputSize: 50, channels: 3, classes: 4, seed: 4, width: 8, blocksPerStage: [1, 2, 1, 1] },
  { architecture: 'resnet', inputSize: 33, channels: 1, classes: 3, seed: 5, width: 4, blocksPerStage: [2] },
  { architecture: 'resnet', inputSize: 40, channels: 3, classes: 2, seed: 6 },
  { architecture: 'mobilenet', inputSize: 64, channels: 1, classes: 2, seed: 3 },
  { architecture: 'mobilenet', inputSize: 50, channels: 3, classes: 4, seed: 4, alpha: 0.25 },
  { architecture: 'mobilenet', inputSize: 17, channels: 1, classes: 3, seed: 5, alpha: 1 },
  { architecture: 'mobilenet', inputSize: 40, channels: 3, classes: 2, seed: 6, alpha: 0.75 },
];

describe.each(architectures)('buildModel($architecture, $inputSize x $inputSize x $channels, $classes classes)', (spec) => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  it('has weights matching describeParameters one-to-one, by name and shape', () => {
    const model = buildModel(spec);
    try {
      const params = describeParameters(spec);
      expect(model.weights.map((w) => w.originalName)).toEqual(params.map((p) => p.name));
      expect(model.weights.map((w) => w.read().shape)).toEqual(params.map((p) => p.shape));
      expect(model.trainableWeights.length).toBe(params.length);
      expect(model.countParams()).toBe(parameterCount(spec));
      expect(model.outputs[0]!.shape).toEqual([null, spec.classes]);
    } finally {
      model.dispose();
    }
  });

  it('starts from the deterministic initial weights, round-trips others bit-exactly and outputs probabilities', () => {
    const model = buildModel(spec);
    try {
      expect(sameBits(getFlatWeights(model), initialWeights(spec))).toBe(true);
      const flat = new Float32Array(parameterCount(spec)).map((_, i) => Math.sin(i * 0.37) * 0.2);
      setFlatWeights(model, flat);
      expect(sameBits(getFlatWeights(model), flat)).toBe(true);
      const sums = tf.tidy(() => {
        const probs = model.predict(tf.randomUniform([3, spec.inputSize, spec.inputSize, spec.channels], 0, 1, 'float32', 7)) as tf.Tensor2D;
        expect(probs.shape).toEqual([3, spec.classes]);
        return Array.from(tf.sum(probs, 1).dataSync());
      });
      for (const sum of sums) expect(sum).toBeCloseTo(1, 5);
    } finally {
      model.dispose();
    }
    const other = initialWeights({ ...spec, seed: spec.seed + 100 });
    const seeded = buildModel(spec, other);
    try {
      expect(sameBits(getFlatWeights(seeded), other)).toBe(true);
      expect(sameBits(other, initialWeights(spec))).toBe(false);
    } finally {
      seeded.dispose();
    }
  });
});

describe('setFlatWeights / getFlatWeights', () => {
  it('round-trips bit-exactly, tensor by tensor in layout order', () => {
    const spec = specs[1]!;
    const model = buildModel(spec);
    try {
      const flat = new Float32Array(parameterCount(spec)).map((_, i) => Math.sin(i) * 0.5);
      setFlatWeights(model, flat);
      expect(sameBits(getFlatWeights(model), flat)).toBe(true);
      // The first tensor of the layout is conv1/kernel, so its values must be the first ones of the vector.
      const conv1 = model.weights[0]!.read().dataSync();
      expect(Array.from(conv1)).toEqual(Array.from(flat.subarray(0, conv1.length)));
      // The model keeps its own copy: changing the caller's buffer afterwards must not change the model.
      flat.fill(0);
      expect(getFlatWeights(model).some((v) => v !== 0)).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('rejects vectors of the wrong length or with non-finite values, with a clear message', () => {
    const spec = specs[0]!;
    const model = buildModel(spec);
    try {
      const n = parameterCount(spec);
      expect(() => setFlatWeights(model, new Float32Array(n - 1))).toThrow(`weight vector has ${n - 1} values but model 'small-cnn' has ${n} parameters`);
      expect(() => setFlatWeights(model, new Float32Array(n + 1))).toThrow(RangeError);
      const bad = new Float32Array(n);
      bad[17] = NaN;
      expect(() => setFlatWeights(model, bad)).toThrow(/value 17 is NaN/);
      expect(() => buildModel(spec, new Float32Array(3))).toThrow(/has 3 values/);
    } finally {
      model.dispose();
    }
  });

  it.each([specs[0]!, architectures[0]!, architectures[4]!])('does not leak tensors ($architecture)', (spec) => {
    const before = tf.memory().numTensors;
    const model = buildModel(spec);
    setFlatWeights(model, getFlatWeights(model));
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
