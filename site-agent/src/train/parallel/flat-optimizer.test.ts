import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { createFlatOptimizer } from './flat-optimizer.js';

/** Gradients that change sign and scale from step to step, as a real training's do. */
function gradientAt(step: number, size: number): Float32Array {
  return Float32Array.from({ length: size }, (_, i) => Math.sin(0.7 * i + 1.3 * step) * 10 ** ((i % 5) - 3));
}

/** The same steps with tfjs's optimiser on one variable. */
function tfjsSteps(kind: 'sgd' | 'adam', learningRate: number, start: Float32Array, steps: number): Float32Array {
  const variable = tf.variable(tf.tensor1d(start));
  const optimizer = kind === 'adam' ? tf.train.adam(learningRate) : tf.train.sgd(learningRate);
  for (let step = 0; step < steps; step++) {
    const gradient = tf.tensor1d(gradientAt(step, start.length));
    optimizer.applyGradients({ [variable.name]: gradient });
    gradient.dispose();
  }
  const out = variable.dataSync() as Float32Array;
  optimizer.dispose();
  variable.dispose();
  return Float32Array.from(out);
}

describe('the flat optimiser step', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  for (const kind of ['sgd', 'adam'] as const) {
    it(`matches tf.train.${kind} over 25 steps to float32 rounding`, () => {
      const start = Float32Array.from({ length: 257 }, (_, i) => Math.cos(i) * 0.1);
      const flat = start.slice();
      const optimizer = createFlatOptimizer(kind, 0.01, flat.length);
      for (let step = 0; step < 25; step++) optimizer.step(flat, gradientAt(step, flat.length));
      const reference = tfjsSteps(kind, 0.01, start, 25);
      let worst = 0;
      for (let i = 0; i < flat.length; i++) worst = Math.max(worst, Math.abs((flat[i] as number) - (reference[i] as number)));
      // tfjs rounds every intermediate to float32; this loop rounds once per step: a few ulps of 0.1 to 0.35 per step.
      expect(worst).toBeLessThan(1e-6);
      // And the steps moved the weights: not a comparison of two no-ops.
      expect(Math.max(...flat.map((v, i) => Math.abs(v - (start[i] as number))))).toBeGreaterThan(0.01);
    });
  }

  it('refuses sizes that do not match, a bad learning rate and an empty vector', () => {
    const optimizer = createFlatOptimizer('adam', 0.1, 4);
    expect(() => optimizer.step(new Float32Array(4), new Float32Array(3))).toThrow(/4 weights and gradients, got 4 and 3/);
    expect(() => createFlatOptimizer('sgd', 0, 4)).toThrow(/learningRate/);
    expect(() => createFlatOptimizer('sgd', 0.1, 0)).toThrow(/at least one value/);
  });
});
