import type { Optimizer } from '../types.js';

/**
 * The optimiser step on the model's flat weight vector (the describeParameters layout), in one loop per step instead
 * of tfjs's ten-odd kernel calls per variable: the same arithmetic as tf.train.sgd and tf.train.adam (defaults
 * beta1 0.9, beta2 0.999, epsilon 1e-7, the float32 backends' epsilon), so a step differs from theirs only by float
 * rounding (computed here in float64, stored as float32). State (Adam's moments) is created fresh per training run,
 * as before: it never leaves the site.
 */
export interface FlatOptimizer {
  /** Applies one step to `weights` in place, for `gradients` (the mean gradient of the batch, same layout). */
  step(weights: Float32Array, gradients: Float32Array): void;
}

export const ADAM = Object.freeze({ beta1: 0.9, beta2: 0.999, epsilon: 1e-7 });

export function createFlatOptimizer(kind: Optimizer, learningRate: number, size: number): FlatOptimizer {
  if (!Number.isFinite(learningRate) || learningRate <= 0) throw new RangeError(`learningRate must be a finite number > 0, got ${learningRate}`);
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`the weight vector must hold at least one value, got ${size}`);
  return kind === 'adam' ? new FlatAdam(learningRate, size) : new FlatSgd(learningRate);
}

class FlatSgd implements FlatOptimizer {
  constructor(private readonly learningRate: number) {}

  step(weights: Float32Array, gradients: Float32Array): void {
    checkSizes(weights, gradients, weights.length);
    const lr = this.learningRate;
    for (let i = 0; i < weights.length; i++) weights[i] = (weights[i] as number) - lr * (gradients[i] as number);
  }
}

class FlatAdam implements FlatOptimizer {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  /** beta^t after t steps, as tfjs keeps them (starting at beta, for the first step). */
  private accBeta1 = ADAM.beta1;
  private accBeta2 = ADAM.beta2;

  constructor(
    private readonly learningRate: number,
    private readonly size: number,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  step(weights: Float32Array, gradients: Float32Array): void {
    checkSizes(weights, gradients, this.size);
    const { beta1, beta2, epsilon } = ADAM;
    const { m, v, learningRate: lr } = this;
    const c1 = 1 - this.accBeta1;
    const c2 = 1 - this.accBeta2;
    for (let i = 0; i < weights.length; i++) {
      const g = gradients[i] as number;
      const mi = beta1 * (m[i] as number) + (1 - beta1) * g;
      const vi = beta2 * (v[i] as number) + (1 - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      weights[i] = (weights[i] as number) - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + epsilon);
    }
    this.accBeta1 *= beta1;
    this.accBeta2 *= beta2;
  }
}

function checkSizes(weights: Float32Array, gradients: Float32Array, size: number): void {
  if (weights.length !== size || gradients.length !== size) {
    throw new RangeError(`an optimiser step needs ${size} weights and gradients, got ${weights.length} and ${gradients.length}`);
  }
}
