import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { createLogger, createPrng, deriveSeed, parseModelSpec, type ModelSpec, type Prng } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from './backend.js';
import { augmentBatch, augmentationProblems } from './augment.js';
import { buildModel, getFlatWeights } from './model.js';
import type { EvaluationResult, LabeledImages, Optimizer, TrainOptions, TrainResult } from './types.js';

const log = createLogger('site-agent.train');

/** Keras' epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON] before the log in cross-entropy. */
const EPSILON = 1e-7;
/** Forward-only batches can be larger than training batches; this bounds peak memory on 512x512 inputs. */
const EVAL_BATCH_SIZE = 64;
/** deriveSeed stream of the augmentation PRNG, kept apart from the shuffle stream so shuffling is unchanged by it. */
const AUGMENTATION_STREAM = 1;

/** The loss became NaN or infinite: the learning rate is too high for this data, or the input weights are bad. */
export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';
  constructor(
    readonly epoch: number,
    readonly batch: number,
    readonly loss: number,
    reason = `loss is ${loss}`,
  ) {
    super(`training diverged at epoch ${epoch + 1}, batch ${batch + 1}: ${reason}; lower the learning rate`);
  }
}

/** The images or labels do not fit the model spec. */
export class TrainingDataError extends Error {
  override readonly name = 'TrainingDataError';
}

/**
 * Trains the model from `weights` on local data with mini-batch SGD or Adam and sparse categorical cross-entropy.
 * Optimiser state (Adam's moments) is created fresh each call and never leaves the site: every round starts from
 * the global weights alone, as FedAvg assumes.
 * Batches are reshuffled every epoch from `opts.seed`; `opts.steps` cycles such epochs until that many batches have
 * been trained, `opts.epochs` trains whole ones. Throws {@link TrainingDivergedError} when the loss stops
 * being finite, {@link TrainingDataError} when the data does not fit the spec and RangeError for bad options.
 * Optional augmentation, class weights and a FedProx proximal term change only the training steps (see
 * {@link TrainOptions}); left out, training is exactly the plain unweighted FedAvg local update.
 */
const OPTIMIZERS: readonly Optimizer[] = ['sgd', 'adam'];

export async function trainLocal(
  spec: ModelSpec,
  weights: Float32Array,
  data: LabeledImages,
  opts: TrainOptions,
): Promise<TrainResult> {
  const started = performance.now();
  const valid = parseModelSpec(spec);
  validateData(valid, data);
  validateOptions(opts, valid.classes);
  const backend = await initBackend();

  const model = buildModel(valid, weights);
  const optimizer = createOptimizer(opts);
  const constants: tf.Tensor[] = [];
  try {
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const extras: LossExtras = {};
    const weightsPerClass = classWeightVector(opts, data, valid.classes);
    if (weightsPerClass) constants.push((extras.classWeights = tf.tensor1d(weightsPerClass, 'float32')));
    // mu = 0 skips the term entirely, so the graph (and the result, bit for bit) is today's.
    if (opts.proximalMu !== undefined && opts.proximalMu > 0) {
      const globals = variables.map((v) => tf.clone(v));
      constants.push(...globals);
      extras.proximal = { mu: opts.proximalMu, globals };
    }
    const augment: Augment | undefined = opts.augmentation
      ? { options: opts.augmentation, prng: createPrng(deriveSeed(opts.seed, AUGMENTATION_STREAM)) }
      : undefined;
    const order = Int32Array.from({ length: data.count }, (_, i) => i);
    const prng = createPrng(opts.seed);
    const batchesPerEpoch = Math.ceil(data.count / opts.batchSize);
    const totalSteps = opts.steps ?? (opts.epochs ?? 1) * batchesPerEpoch;
    // The reported figures cover the last epoch's worth of steps; a ring keeps them in the order they were taken.
    const window = Math.min(totalSteps, batchesPerEpoch);
    const recent: WindowStats[] = [];
    let epoch = -1;
    let batch = 0;
    for (let step = 0; step < totalSteps; step++) {
      batch = step % batchesPerEpoch;
      if (batch === 0) {
        epoch++;
        shuffle(order, prng);
      }
      const start = batch * opts.batchSize;
      const indices = order.subarray(start, Math.min(start + opts.batchSize, data.count));
      const outcome = trainStep(model, optimizer, variables, valid.classes, data, indices, extras, augment);
      if (outcome.nonFinite) throw new TrainingDivergedError(epoch, batch, NaN, 'the model output NaN or infinite probabilities');
      if (!Number.isFinite(outcome.loss)) throw new TrainingDivergedError(epoch, batch, outcome.loss);
      recent[step % window] = { loss: outcome.loss * indices.length, correct: outcome.correct, samples: indices.length };
      if (batch === batchesPerEpoch - 1) {
        // A completed epoch implies window = batches per epoch, so the window is exactly this epoch.
        const epochStats = windowStats(recent, step + 1, window);
        log.debug({ epoch: epoch + 1, loss: epochStats.loss / epochStats.samples, accuracy: epochStats.correct / epochStats.samples }, 'epoch finished');
      }
      // Training runs synchronously on wasm/cpu; give the agent's network I/O (keepalives, task stream) a turn.
      await yieldToEventLoop();
    }
    const trained = getFlatWeights(model);
    // The last update happens after the last loss was measured, so it could still have produced NaN weights.
    if (!trained.every(Number.isFinite)) {
      throw new TrainingDivergedError(epoch, batch, NaN, 'the last update made weights non-finite');
    }
    const last = windowStats(recent, totalSteps, window);
    const result: TrainResult = {
      weights: trained,
      loss: last.loss / last.samples,
      accuracy: last.correct / last.samples,
      samples: data.count,
      steps: totalSteps,
      backend: backend.name,
      seconds: (performance.now() - started) / 1000,
    };
    log.info(
      {
        samples: result.samples,
        ...(opts.steps !== undefined ? { steps: opts.steps } : { epochs: opts.epochs }),
        loss: result.loss,
        accuracy: result.accuracy,
        seconds: result.seconds,
        backend: result.backend,
      },
      'local training finished',
    );
    return result;
  } finally {
    for (const t of constants) t.dispose();
    optimizer.dispose();
    model.dispose();
  }
}

/** Mean cross-entropy and accuracy of the model with `weights` over all of `data`, without changing anything. */
export async function evaluateModel(spec: ModelSpec, weights: Float32Array, data: LabeledImages): Promise<EvaluationResult> {
  const valid = parseModelSpec(spec);
  validateData(valid, data);
  await initBackend();
  const model = buildModel(valid, weights);
  try {
    let loss = 0;
    let correct = 0;
    let nonFinite = false;
    for (let start = 0; start < data.count; start += EVAL_BATCH_SIZE) {
      const indices = Int32Array.from({ length: Math.min(EVAL_BATCH_SIZE, data.count - start) }, (_, i) => start + i);
      const stats = tf.tidy(() => {
        const { xs, ys } = batchTensors(data, indices);
        const probs = model.apply(xs, { training: false }) as tf.Tensor2D;
        return lossAndStats(probs, ys, valid.classes)[1];
      });
      const batch = readStats(stats);
      loss += batch.loss * indices.length;
      correct += batch.correct;
      nonFinite ||= batch.nonFinite;
      await yieldToEventLoop();
    }
    // Clipping would hide NaN probabilities behind a finite loss; report them as a NaN loss instead.
    return { loss: nonFinite ? NaN : loss / data.count, accuracy: correct / data.count, samples: data.count };
  } finally {
    model.dispose();
  }
}

/** One step's share of the reported figures: summed loss (mean x batch size), correct count and batch size. */
interface WindowStats {
  loss: number;
  correct: number;
  samples: number;
}

/**
 * Totals of the last `count` steps in a ring of `ring.length` slots after `taken` steps, added oldest first so that
 * the sum is the one a plain running total over the same steps gives.
 */
function windowStats(ring: readonly WindowStats[], taken: number, count: number): WindowStats {
  const total = { loss: 0, correct: 0, samples: 0 };
  for (let step = taken - count; step < taken; step++) {
    const s = ring[step % ring.length]!;
    total.loss += s.loss;
    total.correct += s.correct;
    total.samples += s.samples;
  }
  return total;
}

/**
 * The model's class probabilities (softmax outputs) for every image of `data`, row-major [count x classes], as
 * float64 so callers can bin and rank them without another copy. Forward pass only, never augmented.
 */
export async function predictProbabilities(spec: ModelSpec, weights: Float32Array, data: LabeledImages): Promise<Float64Array> {
  const valid = parseModelSpec(spec);
  validateData(valid, data);
  await initBackend();
  const model = buildModel(valid, weights);
  try {
    const out = new Float64Array(data.count * valid.classes);
    for (let start = 0; start < data.count; start += EVAL_BATCH_SIZE) {
      const indices = Int32Array.from({ length: Math.min(EVAL_BATCH_SIZE, data.count - start) }, (_, i) => start + i);
      const probs = tf.tidy(() => model.apply(batchTensors(data, indices).xs, { training: false }) as tf.Tensor2D);
      try {
        out.set(probs.dataSync(), start * valid.classes);
      } finally {
        probs.dispose();
      }
      await yieldToEventLoop();
    }
    return out;
  } finally {
    model.dispose();
  }
}

/** Optional training-only loss terms; both absent is plain unweighted cross-entropy. */
interface LossExtras {
  classWeights?: tf.Tensor1D;
  proximal?: { mu: number; globals: tf.Tensor[] };
}

interface Augment {
  options: NonNullable<TrainOptions['augmentation']>;
  prng: Prng;
}

interface StepResult {
  loss: number;
  correct: number;
  nonFinite: boolean;
}

function trainStep(
  model: tfl.LayersModel,
  optimizer: tf.Optimizer,
  variables: tf.Variable[],
  classes: number,
  data: LabeledImages,
  indices: Int32Array,
  extras: LossExtras,
  augment: Augment | undefined,
): StepResult {
  const { xs, ys } = batchTensors(data, indices, augment);
  let stats: tf.Tensor1D | undefined;
  try {
    // The cost is read from `stats` (one transfer with the accuracy), so minimize need not return it.
    optimizer.minimize(
      () => {
        const probs = model.apply(xs, { training: true }) as tf.Tensor2D;
        const [loss, extra] = lossAndStats(probs, ys, classes, extras.classWeights);
        // keep() lets the accuracy and NaN count outlive minimize's internal tidy.
        stats = tf.keep(extra);
        return extras.proximal ? tf.add(loss, proximalTerm(variables, extras.proximal)) : loss;
      },
      false,
      variables,
    );
    if (!stats) throw new Error('optimizer.minimize did not run the loss function');
    return readStats(stats);
  } finally {
    stats?.dispose();
    xs.dispose();
    ys.dispose();
  }
}

/**
 * [training loss, stats] for one batch: the differentiable loss (class-weighted when `classWeights` is given, as
 * Keras' sample weights: mean of weight·cross-entropy) and [unweighted mean loss, correct count, non-finite
 * probability count]. The reported loss is unweighted so that sites remain comparable whatever their weighting.
 */
function lossAndStats(probs: tf.Tensor2D, labels: tf.Tensor1D, classes: number, classWeights?: tf.Tensor1D): [tf.Scalar, tf.Tensor1D] {
  const oneHot = tf.oneHot(labels, classes);
  const clipped = tf.clipByValue(probs, EPSILON, 1 - EPSILON);
  const perSample = tf.neg(tf.sum(tf.mul(oneHot, tf.log(clipped)), 1));
  const loss = tf.mean(perSample) as tf.Scalar;
  const trainingLoss = classWeights ? (tf.mean(tf.mul(perSample, tf.gather(classWeights, labels))) as tf.Scalar) : loss;
  const correct = tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'float32'));
  const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(probs)), 'float32'));
  return [trainingLoss, tf.stack([loss, correct, nonFinite]) as tf.Tensor1D];
}

/** FedProx: (mu/2)·Σ||w − w_global||², pulling the local model towards the round's global model. */
function proximalTerm(variables: tf.Variable[], proximal: { mu: number; globals: tf.Tensor[] }): tf.Scalar {
  const squares = variables.map((v, i) => tf.sum(tf.square(tf.sub(v, proximal.globals[i]!))));
  return tf.mul(proximal.mu / 2, tf.addN(squares));
}

/** Per-class loss weights, or undefined for plain cross-entropy. */
function classWeightVector(opts: TrainOptions, data: LabeledImages, classes: number): Float32Array | undefined {
  if (opts.classWeights === undefined) return undefined;
  if (opts.classWeights !== 'balanced') return Float32Array.from(opts.classWeights);
  const counts = new Array<number>(classes).fill(0);
  for (const label of data.labels) counts[label]!++;
  // A class with no local samples never meets its weight; 0 avoids dividing by zero.
  return Float32Array.from(counts, (n) => (n > 0 ? data.count / (classes * n) : 0));
}

function readStats(stats: tf.Tensor1D): StepResult {
  const [loss = NaN, correct = 0, nonFinite = 0] = stats.dataSync();
  stats.dispose();
  return { loss, correct, nonFinite: nonFinite > 0 };
}

/** Gathers the chosen images into one contiguous NHWC batch (plus their labels). */
function batchTensors(data: LabeledImages, indices: Int32Array, augment?: Augment): { xs: tf.Tensor4D; ys: tf.Tensor1D } {
  const imageSize = data.height * data.width * data.channels;
  const pixels = new Float32Array(indices.length * imageSize);
  const labels = new Int32Array(indices.length);
  indices.forEach((source, i) => {
    pixels.set(data.images.subarray(source * imageSize, (source + 1) * imageSize), i * imageSize);
    labels[i] = data.labels[source]!;
  });
  if (augment) augmentBatch(pixels, indices.length, data.height, data.width, data.channels, augment.options, augment.prng);
  return {
    xs: tf.tensor4d(pixels, [indices.length, data.height, data.width, data.channels], 'float32'),
    ys: tf.tensor1d(labels, 'int32'),
  };
}

/** Fisher-Yates with the seeded PRNG, so the same seed visits batches in the same order on every machine. */
function shuffle(values: Int32Array, prng: Prng): void {
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(prng.nextFloat() * (i + 1));
    const tmp = values[i]!;
    values[i] = values[j]!;
    values[j] = tmp;
  }
}

function validateData(spec: ModelSpec, data: LabeledImages): void {
  const fail = (message: string): never => {
    throw new TrainingDataError(`${message} (model ${spec.architecture} expects ${spec.inputSize}x${spec.inputSize}x${spec.channels}, ${spec.classes} classes)`);
  };
  if (!Number.isInteger(data.count) || data.count < 1) fail(`data.count must be a positive integer, got ${data.count}`);
  if (data.height !== spec.inputSize || data.width !== spec.inputSize || data.channels !== spec.channels) {
    fail(`images are ${data.height}x${data.width}x${data.channels}`);
  }
  const expectedPixels = data.count * data.height * data.width * data.channels;
  if (data.images.length !== expectedPixels) {
    fail(`images holds ${data.images.length} values but ${data.count} images of ${data.height}x${data.width}x${data.channels} need ${expectedPixels}`);
  }
  if (data.labels.length !== data.count) fail(`labels holds ${data.labels.length} entries for ${data.count} images`);
  const badLabel = data.labels.findIndex((l) => l < 0 || l >= spec.classes);
  if (badLabel >= 0) fail(`label ${badLabel} is ${data.labels[badLabel]}, outside [0, ${spec.classes})`);
  const badPixel = data.images.findIndex((v) => !Number.isFinite(v));
  if (badPixel >= 0) fail(`image ${Math.floor(badPixel / (expectedPixels / data.count))} contains a non-finite pixel value`);
}

function createOptimizer(opts: TrainOptions): tf.Optimizer {
  switch (opts.optimizer ?? 'sgd') {
    case 'sgd':
      return tf.train.sgd(opts.learningRate);
    case 'adam':
      return tf.train.adam(opts.learningRate);
  }
}

function validateOptions(opts: TrainOptions, classes: number): void {
  const problems: string[] = [];
  if (opts.optimizer !== undefined && !OPTIMIZERS.includes(opts.optimizer)) {
    problems.push(`optimizer must be one of ${OPTIMIZERS.join(', ')}, got ${String(opts.optimizer)}`);
  }
  if (opts.epochs !== undefined && opts.steps !== undefined) problems.push('epochs and steps are alternatives: give exactly one, not both');
  else if (opts.epochs === undefined && opts.steps === undefined) problems.push('give exactly one of epochs or steps');
  if (opts.epochs !== undefined && (!Number.isInteger(opts.epochs) || opts.epochs < 1)) problems.push(`epochs must be an integer >= 1, got ${opts.epochs}`);
  if (opts.steps !== undefined && (!Number.isInteger(opts.steps) || opts.steps < 1)) problems.push(`steps must be an integer >= 1, got ${opts.steps}`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) problems.push(`batchSize must be an integer >= 1, got ${opts.batchSize}`);
  if (!Number.isFinite(opts.learningRate) || opts.learningRate <= 0) problems.push(`learningRate must be a finite number > 0, got ${opts.learningRate}`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffff_ffff) problems.push(`seed must be an unsigned 32-bit integer, got ${opts.seed}`);
  if (opts.augmentation !== undefined) problems.push(...augmentationProblems(opts.augmentation));
  const cw = opts.classWeights;
  if (cw !== undefined && cw !== 'balanced') {
    if (!Array.isArray(cw)) problems.push(`classWeights must be 'balanced' or an array of numbers, got ${String(cw)}`);
    else if (cw.length !== classes) problems.push(`classWeights must have one weight per class (${classes}), got ${cw.length}`);
    else {
      const bad = cw.findIndex((w) => typeof w !== 'number' || !Number.isFinite(w) || w <= 0);
      if (bad >= 0) problems.push(`classWeights[${bad}] must be a finite number > 0, got ${String(cw[bad])}`);
    }
  }
  const mu = opts.proximalMu;
  if (mu !== undefined && (!Number.isFinite(mu) || mu < 0)) problems.push(`proximalMu must be a finite number >= 0, got ${mu}`);
  if (problems.length > 0) throw new RangeError(`invalid training options: ${problems.join('; ')}`);
}
