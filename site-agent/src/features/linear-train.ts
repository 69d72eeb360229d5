/**
 * The training loop of the linear models (linear-models.ts): mini-batch SGD or Adam on the objective there, with the
 * same options as the CNNs' local training, so the site can run it for a study (train/linear maps its options).
 *
 * - `epochs` reshuffle and pass over every row; `steps` take that many batches instead, cycling reshuffled epochs.
 * - `proximalMu` adds FedProx's (mu / 2)·||θ - θ_start||² over every parameter.
 * - `privacy` is DP-SGD as the CNNs do it (train/dp): each step a Poisson sample of the rows (rate batchSize / rows,
 *   from a secure source, not the seed), each row's (class-weighted) data-loss gradient clipped to L2 norm clipNorm
 *   over all parameters, Gaussian noise of standard deviation noiseMultiplier·clipNorm on their sum, and division
 *   by the expected batch size. The L2 and proximal terms depend on no row and are added after the noise.
 * - `maxParameterChange` projects every parameter back within that distance of its start after each step.
 */
import { createPrng, deriveSeed, secureGaussian, secureUniform } from '@federa/shared';
import { z } from 'zod';
import {
  addExampleGradient,
  checkLinearData,
  evaluateLinearModel,
  exampleGradientNormSquared,
  exampleLoss,
  linearOutputs,
  parseLinearSpec,
  range,
  uncheckedObjective,
  type LinearModelSpec,
} from './linear-models.js';
import { FeatureInputError } from './region.js';

export const linearTrainOptionsSchema = z
  .object({
    /** Full passes over the local data. Give exactly one of epochs and steps. */
    epochs: z.number().int().min(1).max(100_000).optional(),
    /** Batches to train, cycling reshuffled epochs (the last one may be partial). */
    steps: z.number().int().min(1).max(10_000_000).optional(),
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
    /** FedProx: (mu / 2)·||θ - θ_start||² added to the objective. */
    proximalMu: z.number().min(0).max(1e6).optional(),
    /** DP-SGD at the row level (see above). */
    privacy: z.object({ clipNorm: z.number().positive(), noiseMultiplier: z.number().positive() }).strict().optional(),
    /**
     * Keep every parameter within this distance of the initial ones (projected after each step), so the update
     * respects the encrypted sum's bound (MAX_WEIGHT_CHANGE in @federa/shared). Omitted: unbounded.
     */
    maxParameterChange: z.number().positive().optional(),
  })
  .strict()
  .refine((o) => (o.epochs === undefined) !== (o.steps === undefined), 'give exactly one of epochs or steps');

export type LinearTrainOptions = z.input<typeof linearTrainOptionsSchema>;

export interface LinearTrainResult {
  /** Flat parameters after training (layout in linear-models.ts); float32 like CNN weights, for the FedAvg vector. */
  parameters: Float32Array;
  /** Mean unweighted data loss (no L2 or proximal term) over all local rows with the trained parameters. */
  loss: number;
  /** Fraction of local rows the trained parameters classify correctly. */
  accuracy: number;
  /** Local rows (the FedAvg weight of this update). */
  samples: number;
  steps: number;
  /** With `privacy`: what the accountant needs, and the share of row gradients the clip norm cut. */
  privacy?: { sampleRate: number; steps: number; noiseMultiplier: number; clipNorm: number; clippedFraction: number };
}

/** Training produced non-finite parameters (learning rate too high for the data); epoch and batch are 0-based. */
export class LinearTrainingError extends Error {
  override readonly name = 'LinearTrainingError';
  constructor(
    readonly reason: string,
    readonly epoch: number,
    readonly batch: number,
  ) {
    super(`training diverged at epoch ${epoch + 1}, batch ${batch + 1}: ${reason}; lower the learning rate`);
  }
}

const SHUFFLE_STREAM = 0x4c4d; // 'LM': keeps the shuffle apart from other streams drawn from the same round seed
const ADAM_BETA1 = 0.9;
const ADAM_BETA2 = 0.999;
const ADAM_EPSILON = 1e-7;

/** Trains from `initial` on scaled `x` (row-major rows x features) and `labels`; deterministic for a seed without privacy. */
export function trainLinearModel(spec: LinearModelSpec, initial: Float32Array, x: Float64Array, labels: ArrayLike<number>, options: LinearTrainOptions): LinearTrainResult {
  const valid = parseLinearSpec(spec);
  const parsed = linearTrainOptionsSchema.safeParse(options);
  if (!parsed.success) {
    throw new FeatureInputError(`linear training options are invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}`);
  }
  const opts = parsed.data;
  const rows = checkLinearData(valid, initial, x, labels);
  if (rows === 0) throw new FeatureInputError('cannot train on no rows');
  const classWeights = classWeightVector(opts.classWeights, labels, valid.classes);
  const batchesPerEpoch = Math.ceil(rows / opts.batchSize);
  const totalSteps = opts.steps ?? opts.epochs! * batchesPerEpoch;
  const dp = opts.privacy;
  // A batch larger than the data samples every row every step.
  const sampleRate = Math.min(1, opts.batchSize / rows);
  const mu = opts.proximalMu ?? 0;

  const params = Float64Array.from(initial);
  const adam = opts.optimizer === 'adam' ? { m: new Float64Array(params.length), v: new Float64Array(params.length) } : null;
  const prng = createPrng(deriveSeed(opts.seed, SHUFFLE_STREAM));
  const order = range(rows);
  const z = new Float64Array(linearOutputs(valid));
  const dz = new Float64Array(z.length);
  const weightCount = params.length - z.length;
  let clipped = 0;
  let sampled = 0;
  for (let step = 0; step < totalSteps; step++) {
    let gradient: Float64Array;
    if (dp) {
      const batch = poissonSample(rows, sampleRate);
      gradient = new Float64Array(params.length);
      for (const r of batch) {
        const label = labels[r]!;
        const weight = classWeights?.[label] ?? 1;
        exampleLoss(valid, params, x, r, label, z, dz);
        const norm = Math.abs(weight) * Math.sqrt(exampleGradientNormSquared(valid, x, r, dz));
        const clip = norm > dp.clipNorm ? dp.clipNorm / norm : 1;
        if (clip < 1) clipped++;
        addExampleGradient(valid, x, r, dz, weight * clip, gradient);
      }
      sampled += batch.length;
      const noise = secureGaussian(gradient.length, dp.noiseMultiplier * dp.clipNorm);
      const expectedBatch = sampleRate * rows;
      for (let k = 0; k < gradient.length; k++) gradient[k] = (gradient[k]! + noise[k]!) / expectedBatch;
      for (let k = 0; k < weightCount; k++) gradient[k]! += opts.l2 * params[k]!;
    } else {
      const b = step % batchesPerEpoch;
      if (b === 0) shuffle(order, prng);
      const batch = order.subarray(b * opts.batchSize, Math.min(rows, (b + 1) * opts.batchSize));
      gradient = uncheckedObjective(valid, params, x, labels, batch, opts.l2, classWeights, true).gradient;
    }
    if (mu > 0) for (let k = 0; k < params.length; k++) gradient[k]! += mu * (params[k]! - initial[k]!);
    if (adam === null) {
      for (let k = 0; k < params.length; k++) params[k]! -= opts.learningRate * gradient[k]!;
    } else {
      const correction1 = 1 - ADAM_BETA1 ** (step + 1);
      const correction2 = 1 - ADAM_BETA2 ** (step + 1);
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
    if (!params.every(Number.isFinite)) {
      throw new LinearTrainingError('the parameters became non-finite', Math.floor(step / batchesPerEpoch), step % batchesPerEpoch);
    }
  }
  const parameters = Float32Array.from(params);
  if (!parameters.every(Number.isFinite)) {
    const last = totalSteps - 1;
    throw new LinearTrainingError('the parameters grew past the float32 range', Math.floor(last / batchesPerEpoch), last % batchesPerEpoch);
  }
  if (opts.maxParameterChange !== undefined) pullWithin(parameters, initial, opts.maxParameterChange);
  const evaluation = evaluateLinearModel(valid, parameters, x, labels);
  return {
    parameters,
    loss: evaluation.loss,
    accuracy: evaluation.accuracy,
    samples: rows,
    steps: totalSteps,
    ...(dp
      ? { privacy: { sampleRate, steps: totalSteps, noiseMultiplier: dp.noiseMultiplier, clipNorm: dp.clipNorm, clippedFraction: sampled > 0 ? clipped / sampled : 0 } }
      : {}),
  };
}

/** Each row independently with probability `rate`, from a secure source: the accountant assumes nobody can replay it. */
function poissonSample(rows: number, rate: number): number[] {
  const draws = secureUniform(rows);
  const chosen: number[] = [];
  for (let r = 0; r < rows; r++) if (draws[r]! < rate) chosen.push(r);
  return chosen;
}

function shuffle(order: Int32Array, prng: { nextFloat(): number }): void {
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(prng.nextFloat() * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
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
