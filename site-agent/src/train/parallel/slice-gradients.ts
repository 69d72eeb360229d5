import { elementCount } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/** Keras' epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON] before the log in cross-entropy. */
export const EPSILON = 1e-7;

/** Images [count, height, width, channels] (row-major, float32) and their labels: one thread's part of a batch. */
export interface Slice {
  pixels: Float32Array;
  labels: Int32Array;
  count: number;
  height: number;
  width: number;
  channels: number;
  /** Segmentation: per-pixel class indices, [count, height, width]. */
  masks?: Uint8Array;
}

/**
 * What one slice contributes to a step's reported figures: summed unweighted loss, correct count, bad outputs, and
 * (DP-SGD only) how many examples had their gradient scaled down to the clip norm.
 */
export interface SliceStats {
  loss: number;
  correct: number;
  nonFinite: number;
  clipped: number;
}

/** A slice's gradient computation: plain (this file) or clipped per example (../dp/per-example-gradients.ts). */
export interface GradientSource {
  readonly size: number;
  setWeights(flat: Float32Array): void;
  compute(slice: Slice, out: Float32Array): SliceStats;
}

/**
 * The gradient of one slice's summed training loss (cross-entropy, class-weighted when asked) for the model's
 * weights, written into a flat vector in the describeParameters layout. A batch split into slices has the sum of
 * the slices' gradients as its gradient (up to float rounding): the batch's mean gradient is that sum over the batch
 * size, whatever the number of slices. No architecture has batch statistics (no batch normalisation, no dropout),
 * so a slice's gradient does not depend on the rest of the batch.
 */
export class SliceGradients implements GradientSource {
  private readonly variables: tf.Variable[];
  private readonly shapes: number[][];
  readonly size: number;

  constructor(
    private readonly model: tfl.LayersModel,
    private readonly classes: number,
    private readonly classWeights?: tf.Tensor1D,
  ) {
    if (model.weights.some((w) => !w.trainable)) throw new Error(`model '${model.name}' has weights that do not train; data-parallel steps assume none`);
    this.variables = model.weights.map((w) => w.read() as tf.Variable);
    this.shapes = this.variables.map((v) => v.shape);
    this.size = this.shapes.reduce((sum, shape) => sum + elementCount(shape), 0);
  }

  /** Sets every weight from the flat vector (copied: the caller's buffer changes at the next optimiser step). */
  setWeights(flat: Float32Array): void {
    if (flat.length !== this.size) throw new RangeError(`weight vector has ${flat.length} values, the model ${this.size}`);
    let offset = 0;
    tf.tidy(() => {
      this.variables.forEach((variable, i) => {
        const shape = this.shapes[i] as number[];
        const size = elementCount(shape);
        variable.assign(tf.tensor(flat.slice(offset, offset + size), shape, 'float32'));
        offset += size;
      });
    });
  }

  /** The slice's gradient into `out` (this.size values) and its figures. */
  compute(slice: Slice, out: Float32Array): SliceStats {
    if (out.length !== this.size) throw new RangeError(`gradient vector has ${out.length} values, the model ${this.size}`);
    const { classes, classWeights, model } = this;
    const xs = tf.tensor4d(slice.pixels, [slice.count, slice.height, slice.width, slice.channels], 'float32');
    const ys = tf.tensor1d(slice.labels, 'int32');
    let stats: tf.Tensor | undefined;
    try {
      const { value, grads } = tf.variableGrads(() => {
        const probs = model.apply(xs, { training: true }) as tf.Tensor2D;
        const oneHot = tf.oneHot(ys, classes);
        const perSample = tf.neg(tf.sum(tf.mul(oneHot, tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON))), 1));
        const correct = tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), ys), 'float32'));
        const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(probs)), 'float32'));
        // keep() lets the figures outlive variableGrads' tidy.
        stats = tf.keep(tf.stack([tf.sum(perSample), correct, nonFinite]));
        return (classWeights ? tf.sum(tf.mul(perSample, tf.gather(classWeights, ys))) : tf.sum(perSample)) as tf.Scalar;
      }, this.variables);
      value.dispose();
      readGradients(this.variables, grads, out);
      const [loss = NaN, correct = 0, nonFinite = 0] = (stats as unknown as tf.Tensor).dataSync();
      return { loss, correct, nonFinite, clipped: 0 };
    } finally {
      stats?.dispose();
      xs.dispose();
      ys.dispose();
    }
  }
}

/** Writes each variable's gradient into `out` in variable order (the flat layout), and disposes the gradients. */
export function readGradients(variables: readonly tf.Variable[], grads: tf.NamedTensorMap, out: Float32Array): void {
  try {
    let offset = 0;
    for (const variable of variables) {
      const grad = grads[variable.name];
      if (!grad) throw new Error(`no gradient for weight ${variable.name}`);
      const values = grad.dataSync();
      out.set(values, offset);
      offset += values.length;
    }
  } finally {
    tf.dispose(grads);
  }
}
