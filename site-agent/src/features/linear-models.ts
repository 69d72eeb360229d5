/**
 * Linear classifiers on standardised features, trained locally and averaged with FedAvg like the CNNs.
 *
 * Parameters are one flat vector: the weights, row-major outputs x features, then one bias per output. Two classes
 * use one output (the positive class, index 1); more classes use one output each. So every site's vector has the same
 * shape and FedAvg (weightedUpdateVector / applyAggregate in @federa/shared) averages it through the encrypted sum.
 *
 * - 'logistic': binary logistic regression (sigmoid) for two classes, multinomial (softmax) for more; loss = mean
 *   cross-entropy.
 * - 'svm': linear SVM, one-vs-rest hinge loss Σ_k max(0, 1 - y_k·z_k) with y_k = +1 for the sample's class and -1
 *   otherwise (two classes: one output, y = +1 for class 1). The subgradient at the kink is taken as 0.
 * Both add (l2 / 2)·||W||² over the weights, not the biases, and are trained by mini-batch SGD or Adam on
 * (1/B)·Σ w_i·loss_i + (l2 / 2)·||W||², w_i the sample's class weight (1 without class weights), as the CNNs do.
 *
 * Scores (predictLinearProbabilities): logistic gives probabilities. The SVM gives a softmax over its margins
 * (two classes: over (-z, z)), which ranks and arg-maxes like the margins but is not a calibrated probability;
 * AUC, accuracy and F1 (metricsFromScores / evaluationCounts) only need the ranking and the arg-max.
 */
import { createPrng, deriveSeed } from '@federa/shared';
import { z } from 'zod';
import { FeatureInputError } from './region.js';

export const linearModelSpecSchema = z
  .object({
    kind: z.enum(['logistic', 'svm']),
    classes: z.number().int().min(2).max(1000),
    features: z.number().int().min(1).max(1_000_000),
  })
  .strict();

export type LinearModelSpec = z.output<typeof linearModelSpecSchema>;

export const linearTrainOptionsSchema = z
  .object({
    /** Full passes over the local data. */
    epochs: z.number().int().min(1).max(100_000),
    /** Rows per step; the last batch of an epoch may be smaller. */
    batchSize: z.number().int().min(1),
    learningRate: z.number().positive().max(1e3),
    /** 'sgd' (plain) or 'adam' (beta 0.9 / 0.999, epsilon 1e-7 as tfjs; moments reset every call). */
    optimizer: z.enum(['sgd', 'adam']).default('sgd'),
    /** L2 penalty on the weights (not the biases). */
    l2: z.number().min(0).max(1e3).default(1e-3),
    /** Seeds the per-epoch shuffling (uint32). */
    seed: z.number().int().min(0).max(0xffff_ffff),
    /** 'balanced' (n / (classes·n_c) from the local labels, 0 for an absent class) or one weight > 0 per class. */
    classWeights: z.union([z.literal('balanced'), z.array(z.number().positive())]).optional(),
    /**
     * Keep every parameter within this distance of the initial ones (projected after each step), so the update
     * respects the encrypted sum's bound (MAX_WEIGHT_CHANGE in @federa/shared). Omitted: unbounded.
     */
    maxParameterChange: z.number().positive().optional(),
  })
  .strict();

export type LinearTrainOptions = z.input<typeof linearTrainOptionsSchema>;

export interface LinearTrainResult {
  /** Flat parameters after training (layout above); float32 like CNN weights, for the FedAvg vector. */
  parameters: Float32Array;
  /** Mean unweighted data loss (no L2 term) over all local rows with the trained parameters. */
  loss: number;
  /** Fraction of local rows the trained parameters classify correctly. */
  accuracy: number;
  /** Local rows (the FedAvg weight of this update). */
  samples: number;
  steps: number;
}

/** Training produced non-finite parameters (learning rate too high for the data). */
export class LinearTrainingError extends Error {
  override readonly name = 'LinearTrainingError';
}

/** Outputs of the model: 1 for two classes, else one per class. */
export function linearOutputs(spec: LinearModelSpec): number {
  return spec.classes === 2 ? 1 : spec.classes;
}

export function linearParameterCount(spec: LinearModelSpec): number {
  const outputs = linearOutputs(spec);
  return outputs * spec.features + outputs;
}

/** The consortium's starting point: all zeros (the losses are convex, so no symmetry needs breaking). */
export function initialLinearParameters(spec: LinearModelSpec): Float32Array {
  return new Float32Array(linearParameterCount(parseSpec(spec)));
}

export interface ObjectiveOptions {
  l2?: number;
  /** Rows to use (a batch); omitted: all. */
  rows?: ArrayLike<number>;
  /** Per-class loss weights; omitted: 1. */
  classWeights?: ArrayLike<number>;
}

/**
 * The training objective (1/B)·Σ w_i·loss_i + (l2 / 2)·||W||² over the chosen rows of the standardised `x`
 * (row-major rows x features) and its gradient with respect to the flat parameters.
 */
export function linearObjective(
  spec: LinearModelSpec,
  parameters: ArrayLike<number>,
  x: Float64Array,
  labels: ArrayLike<number>,
  options: ObjectiveOptions = {},
): { loss: number; gradient: Float64Array } {
  const valid = parseSpec(spec);
  const count = checkData(valid, parameters, x, labels);
  const rows = options.rows ?? range(count);
  for (let b = 0; b < rows.length; b++) {
    const r = rows[b]!;
    if (!Number.isInteger(r) || r < 0 || r >= count) throw new FeatureInputError(`batch row ${b} is ${r}, not in [0, ${count})`);
  }
  const l2 = options.l2 ?? 0;
  if (!(l2 >= 0 && Number.isFinite(l2))) throw new FeatureInputError(`l2 must be finite and >= 0, got ${l2}`);
  if (options.classWeights !== undefined && options.classWeights.length !== valid.classes) {
    throw new FeatureInputError(`classWeights has ${options.classWeights.length} weights for ${valid.classes} classes`);
  }
  return objective(valid, parameters, x, labels, rows, l2, options.classWeights, true);
}

/** Row-major rows x classes scores (see above for what they mean per kind). */
export function predictLinearProbabilities(spec: LinearModelSpec, parameters: ArrayLike<number>, x: Float64Array): Float64Array {
  const valid = parseSpec(spec);
  const rows = checkData(valid, parameters, x, null);
  const { classes } = valid;
  const out = new Float64Array(rows * classes);
  const z = new Float64Array(linearOutputs(valid));
  for (let r = 0; r < rows; r++) {
    margins(valid, parameters, x, r, z);
    if (classes === 2) {
      const m = valid.kind === 'svm' ? 2 * z[0]! : z[0]!;
      out[r * 2] = sigmoid(-m);
      out[r * 2 + 1] = sigmoid(m);
    } else {
      softmax(z, out, r * classes);
    }
  }
  return out;
}

/** Mean unweighted data loss and accuracy on standardised rows, like the CNNs' evaluateModel. */
export function evaluateLinearModel(
  spec: LinearModelSpec,
  parameters: ArrayLike<number>,
  x: Float64Array,
  labels: ArrayLike<number>,
): { loss: number; accuracy: number; samples: number } {
  const valid = parseSpec(spec);
  checkData(valid, parameters, x, labels);
  const rows = range(labels.length);
  const { loss } = objective(valid, parameters, x, labels, rows, 0, undefined, false);
  let correct = 0;
  const z = new Float64Array(linearOutputs(valid));
  for (let r = 0; r < labels.length; r++) if (predictedClass(valid, margins(valid, parameters, x, r, z)) === labels[r]) correct++;
  return { loss, accuracy: labels.length === 0 ? Number.NaN : correct / labels.length, samples: labels.length };
}

/** Trains from `initial` on standardised `x` (row-major rows x features) and `labels`; deterministic for a seed. */
export function trainLinearModel(
  spec: LinearModelSpec,
  initial: Float32Array,
  x: Float64Array,
  labels: ArrayLike<number>,
  options: LinearTrainOptions,
): LinearTrainResult {
  const valid = parseSpec(spec);
  const parsed = linearTrainOptionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new FeatureInputError(`linear training options are invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const opts = parsed.data;
  const rows = checkData(valid, initial, x, labels);
  if (rows === 0) throw new FeatureInputError('cannot train on no rows');
  const classWeights = classWeightVector(opts.classWeights, labels, valid.classes);

  const params = Float64Array.from(initial);
  const adam = opts.optimizer === 'adam' ? { m: new Float64Array(params.length), v: new Float64Array(params.length) } : null;
  const prng = createPrng(deriveSeed(opts.seed, SHUFFLE_STREAM));
  const order = range(rows);
  let steps = 0;
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    for (let i = rows - 1; i > 0; i--) {
      const j = Math.floor(prng.nextFloat() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let start = 0; start < rows; start += opts.batchSize) {
      const batch = order.subarray(start, Math.min(rows, start + opts.batchSize));
      const { gradient } = objective(valid, params, x, labels, batch, opts.l2, classWeights, true);
      steps++;
      if (adam === null) {
        for (let k = 0; k < params.length; k++) params[k]! -= opts.learningRate * gradient[k]!;
      } else {
        const correction1 = 1 - ADAM_BETA1 ** steps;
        const correction2 = 1 - ADAM_BETA2 ** steps;
        for (let k = 0; k < params.length; k++) {
          const g = gradient[k]!;
          adam.m[k] = ADAM_BETA1 * adam.m[k]! + (1 - ADAM_BETA1) * g;
          adam.v[k] = ADAM_BETA2 * adam.v[k]! + (1 - ADAM_BETA2) * g * g;
          params[k]! -= (opts.learningRate * (adam.m[k]! / correction1)) / (Math.sqrt(adam.v[k]! / correction2) + ADAM_EPSILON);
        }
      }
      if (opts.maxParameterChange !== undefined) {
        const c = opts.maxParameterChange;
        for (let k = 0; k < params.length; k++) params[k] = Math.min(initial[k]! + c, Math.max(initial[k]! - c, params[k]!));
      }
    }
    for (let k = 0; k < params.length; k++) {
      if (!Number.isFinite(params[k]!)) throw new LinearTrainingError(`training diverged in epoch ${epoch + 1}: lower the learning rate`);
    }
  }
  const parameters = Float32Array.from(params);
  if (parameters.some((v) => !Number.isFinite(v))) throw new LinearTrainingError('trained parameters do not fit float32: lower the learning rate or raise l2');
  if (opts.maxParameterChange !== undefined) pullWithin(parameters, initial, opts.maxParameterChange);
  const evaluation = evaluateLinearModel(valid, parameters, x, labels);
  return { parameters, loss: evaluation.loss, accuracy: evaluation.accuracy, samples: rows, steps };
}

const SHUFFLE_STREAM = 0x4c4d; // 'LM': keeps the shuffle apart from other streams drawn from the same round seed
const ADAM_BETA1 = 0.9;
const ADAM_BETA2 = 0.999;
const ADAM_EPSILON = 1e-7;

function objective(
  spec: LinearModelSpec,
  params: ArrayLike<number>,
  x: Float64Array,
  labels: ArrayLike<number>,
  rows: ArrayLike<number>,
  l2: number,
  classWeights: ArrayLike<number> | undefined,
  withGradient: boolean,
): { loss: number; gradient: Float64Array } {
  const { features, classes, kind } = spec;
  const outputs = linearOutputs(spec);
  const biasAt = outputs * features;
  const gradient = new Float64Array(withGradient ? biasAt + outputs : 0);
  const z = new Float64Array(outputs);
  const dz = new Float64Array(outputs);
  let loss = 0;
  for (let b = 0; b < rows.length; b++) {
    const r = rows[b]!;
    const label = labels[r]!;
    const weight = classWeights?.[label] ?? 1;
    margins(spec, params, x, r, z);
    loss += weight * sampleLoss(kind, classes, z, label, dz);
    if (!withGradient || weight === 0) continue;
    for (let k = 0; k < outputs; k++) {
      const g = (weight * dz[k]!) / rows.length;
      if (g === 0) continue;
      for (let f = 0; f < features; f++) gradient[k * features + f]! += g * x[r * features + f]!;
      gradient[biasAt + k]! += g;
    }
  }
  loss = rows.length === 0 ? Number.NaN : loss / rows.length;
  if (l2 > 0) {
    let squares = 0;
    for (let k = 0; k < biasAt; k++) {
      const w = params[k]!;
      squares += w * w;
      if (withGradient) gradient[k]! += l2 * w;
    }
    loss += (l2 / 2) * squares;
  }
  return { loss, gradient };
}

/** One sample's loss; writes d loss / d z into dz. */
function sampleLoss(kind: LinearModelSpec['kind'], classes: number, z: Float64Array, label: number, dz: Float64Array): number {
  if (kind === 'logistic' && classes === 2) {
    const y = label === 1 ? 1 : 0;
    const m = z[0]!;
    dz[0] = sigmoid(m) - y;
    // softplus(m) - y·m, written to stay finite for large |m|.
    return Math.max(m, 0) + Math.log1p(Math.exp(-Math.abs(m))) - y * m;
  }
  if (kind === 'logistic') {
    let max = -Infinity;
    for (const v of z) if (v > max) max = v;
    let sum = 0;
    for (const v of z) sum += Math.exp(v - max);
    for (let k = 0; k < z.length; k++) dz[k] = Math.exp(z[k]! - max) / sum - (k === label ? 1 : 0);
    return max + Math.log(sum) - z[label]!;
  }
  let loss = 0;
  for (let k = 0; k < z.length; k++) {
    const positive = classes === 2 ? label === 1 : label === k;
    const y = positive ? 1 : -1;
    const slack = 1 - y * z[k]!;
    dz[k] = slack > 0 ? -y : 0;
    if (slack > 0) loss += slack;
  }
  return loss;
}

function margins(spec: LinearModelSpec, params: ArrayLike<number>, x: Float64Array, row: number, out: Float64Array): Float64Array {
  const { features } = spec;
  const biasAt = out.length * features;
  for (let k = 0; k < out.length; k++) {
    let s = params[biasAt + k]!;
    for (let f = 0; f < features; f++) s += params[k * features + f]! * x[row * features + f]!;
    out[k] = s;
  }
  return out;
}

function predictedClass(spec: LinearModelSpec, z: Float64Array): number {
  if (spec.classes === 2) return z[0]! > 0 ? 1 : 0;
  let best = 0;
  for (let k = 1; k < z.length; k++) if (z[k]! > z[best]!) best = k;
  return best;
}

function sigmoid(m: number): number {
  return m >= 0 ? 1 / (1 + Math.exp(-m)) : Math.exp(m) / (1 + Math.exp(m));
}

function softmax(z: Float64Array, out: Float64Array, at: number): void {
  let max = -Infinity;
  for (const v of z) if (v > max) max = v;
  let sum = 0;
  for (const v of z) sum += Math.exp(v - max);
  for (let k = 0; k < z.length; k++) out[at + k] = Math.exp(z[k]! - max) / sum;
}

/** Rounding to float32 can carry a parameter just past the bound; step it back one float32 at a time. */
function pullWithin(parameters: Float32Array, initial: Float32Array, bound: number): void {
  const bits = new Int32Array(parameters.buffer, parameters.byteOffset, parameters.length);
  for (let k = 0; k < parameters.length; k++) {
    const start = initial[k]!;
    while (Math.abs(parameters[k]! - start) > bound) {
      const p = parameters[k]!;
      // Adjacent float32 values differ by 1 in their bit patterns; +1 moves away from zero, -1 towards it.
      if (p === 0) bits[k] = start > 0 ? 1 : 0x8000_0001 | 0;
      else bits[k]! += (p < start) === (p > 0) ? 1 : -1;
    }
  }
}

function range(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

function parseSpec(spec: LinearModelSpec): LinearModelSpec {
  const parsed = linearModelSpecSchema.safeParse(spec);
  if (!parsed.success) throw new FeatureInputError(`linear model spec is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Checks shapes, finiteness and labels; returns the row count. */
function checkData(spec: LinearModelSpec, params: ArrayLike<number>, x: Float64Array, labels: ArrayLike<number> | null): number {
  const expected = linearParameterCount(spec);
  if (params.length !== expected) throw new FeatureInputError(`parameters have ${params.length} values, expected ${expected} for ${JSON.stringify(spec)}`);
  for (let k = 0; k < params.length; k++) if (!Number.isFinite(params[k]!)) throw new FeatureInputError(`parameter ${k} is ${params[k]}, not finite`);
  if (x.length % spec.features !== 0) throw new FeatureInputError(`${x.length} feature values are not whole rows of ${spec.features}`);
  const rows = x.length / spec.features;
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]!)) throw new FeatureInputError(`feature ${i % spec.features} of row ${Math.floor(i / spec.features)} is ${x[i]}; impute or drop it first`);
  }
  if (labels !== null) {
    if (labels.length !== rows) throw new FeatureInputError(`${labels.length} labels for ${rows} rows`);
    for (let r = 0; r < rows; r++) {
      const l = labels[r]!;
      if (!Number.isInteger(l) || l < 0 || l >= spec.classes) throw new FeatureInputError(`label ${r} is ${l}, not in [0, ${spec.classes})`);
    }
  }
  return rows;
}

function classWeightVector(setting: 'balanced' | number[] | undefined, labels: ArrayLike<number>, classes: number): Float64Array | undefined {
  if (setting === undefined) return undefined;
  if (setting !== 'balanced') {
    if (setting.length !== classes) throw new FeatureInputError(`classWeights has ${setting.length} weights for ${classes} classes`);
    return Float64Array.from(setting);
  }
  const counts = new Array<number>(classes).fill(0);
  for (let r = 0; r < labels.length; r++) counts[labels[r]!]!++;
  // An absent class never meets its weight; 0 avoids dividing by zero.
  return Float64Array.from(counts, (n) => (n > 0 ? labels.length / (classes * n) : 0));
}
