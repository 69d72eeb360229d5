/**
 * Linear classifiers on scaled features: the model, its loss and gradient, its scores. The training loop is
 * linear-train.ts; the site trains them and FedAvg averages them like the CNNs.
 *
 * Parameters are one flat vector, the shared model registry's layout for its linear architectures: the kernel,
 * row-major features x outputs (row f holds feature f's weight for every output, the dense-layer convention), then one
 * bias per output. Two classes use one output (the score of class 1); more classes use one output each. So every
 * site's vector has the same shape and FedAvg (weightedUpdateVector / applyAggregate in @federa/shared) averages it
 * through the encrypted sum.
 *
 * - 'logistic': binary logistic regression (sigmoid) for two classes, multinomial (softmax) for more; loss = mean
 *   cross-entropy.
 * - 'svm': linear SVM, one-vs-rest hinge loss Σ_k max(0, 1 - y_k·z_k) with y_k = +1 for the sample's class and -1
 *   otherwise (two classes: one output, y = +1 for class 1). The subgradient at the kink is taken as 0.
 * Both add (l2 / 2)·||W||² over the weights, not the biases: the objective is
 * (1/B)·Σ w_i·loss_i + (l2 / 2)·||W||², w_i the sample's class weight (1 without class weights), as the CNNs do.
 *
 * Scores (predictLinearProbabilities): logistic gives probabilities. The SVM gives a softmax over its margins
 * (two classes: over (-z, z)), which ranks and arg-maxes like the margins but is not a calibrated probability;
 * AUC, accuracy and F1 (metricsFromScores / evaluationCounts) only need the ranking and the arg-max.
 */
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
  return new Float32Array(linearParameterCount(parseLinearSpec(spec)));
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
  const valid = parseLinearSpec(spec);
  const count = checkLinearData(valid, parameters, x, labels);
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
  return uncheckedObjective(valid, parameters, x, labels, rows, l2, options.classWeights, true);
}

/** Row-major rows x classes scores (see above for what they mean per kind). */
export function predictLinearProbabilities(spec: LinearModelSpec, parameters: ArrayLike<number>, x: Float64Array): Float64Array {
  const valid = parseLinearSpec(spec);
  const rows = checkLinearData(valid, parameters, x, null);
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
  const valid = parseLinearSpec(spec);
  checkLinearData(valid, parameters, x, labels);
  const rows = range(labels.length);
  const { loss } = uncheckedObjective(valid, parameters, x, labels, rows, 0, undefined, false);
  let correct = 0;
  const z = new Float64Array(linearOutputs(valid));
  for (let r = 0; r < labels.length; r++) if (predictedClass(valid, margins(valid, parameters, x, r, z)) === labels[r]) correct++;
  return { loss, accuracy: labels.length === 0 ? Number.NaN : correct / labels.length, samples: labels.length };
}

/** linearObjective without its checks, for the training loop, which checks its data once. */
export function uncheckedObjective(
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
    if (withGradient && weight !== 0) addExampleGradient(spec, x, r, dz, weight / rows.length, gradient);
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

/**
 * One row's loss, without checks (the training loop checks its data once): its margins go into `z`, d loss / d z
 * into `dz` (both of length linearOutputs), and the return value is the unweighted loss.
 */
export function exampleLoss(spec: LinearModelSpec, params: ArrayLike<number>, x: Float64Array, row: number, label: number, z: Float64Array, dz: Float64Array): number {
  margins(spec, params, x, row, z);
  return sampleLoss(spec.kind, spec.classes, z, label, dz);
}

/** Adds scale·dz ⊗ [x_row, 1] (the row's parameter gradient, times scale) to `gradient`. */
export function addExampleGradient(spec: LinearModelSpec, x: Float64Array, row: number, dz: Float64Array, scale: number, gradient: Float64Array): void {
  const { features } = spec;
  const outputs = dz.length;
  const biasAt = outputs * features;
  for (let k = 0; k < outputs; k++) {
    const g = scale * dz[k]!;
    if (g === 0) continue;
    for (let f = 0; f < features; f++) gradient[f * outputs + k]! += g * x[row * features + f]!;
    gradient[biasAt + k]! += g;
  }
}

/** Squared L2 norm of the row's parameter gradient dz ⊗ [x_row, 1]: ||dz||²·(||x_row||² + 1). */
export function exampleGradientNormSquared(spec: LinearModelSpec, x: Float64Array, row: number, dz: Float64Array): number {
  let dzSquares = 0;
  for (const g of dz) dzSquares += g * g;
  let xSquares = 1;
  for (let f = 0; f < spec.features; f++) xSquares += x[row * spec.features + f]! ** 2;
  return dzSquares * xSquares;
}

function margins(spec: LinearModelSpec, params: ArrayLike<number>, x: Float64Array, row: number, out: Float64Array): Float64Array {
  const { features } = spec;
  const outputs = out.length;
  const biasAt = outputs * features;
  for (let k = 0; k < outputs; k++) {
    let s = params[biasAt + k]!;
    for (let f = 0; f < features; f++) s += params[f * outputs + k]! * x[row * features + f]!;
    out[k] = s;
  }
  return out;
}

/** The class the margins predict: the positive class above 0 for two classes, else the arg-max. */
export function predictedClass(spec: LinearModelSpec, z: Float64Array): number {
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

export function range(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

export function parseLinearSpec(spec: LinearModelSpec): LinearModelSpec {
  const parsed = linearModelSpecSchema.safeParse(spec);
  if (!parsed.success) throw new FeatureInputError(`linear model spec is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Checks shapes, finiteness and labels; returns the row count. */
export function checkLinearData(spec: LinearModelSpec, params: ArrayLike<number>, x: Float64Array, labels: ArrayLike<number> | null): number {
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
