import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { createLogger, createPrng, parseModelSpec, type ModelSpec, type Prng } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from './backend.js';
import { buildModel, getFlatWeights } from './model.js';
import type { EvaluationResult, LabeledImages, Optimizer, TrainOptions, TrainResult } from './types.js';

const log = createLogger('site-agent.train');

/** Keras' epsilon: probabilities are clipped to [EPSILON, 1 - EPSILON] before the log in cross-entropy. */
const EPSILON = 1e-7;
/** Forward-only batches can be larger than training batches; this bounds peak memory on 512x512 inputs. */
const EVAL_BATCH_SIZE = 64;

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
 * Batches are reshuffled every epoch from `opts.seed`. Throws {@link TrainingDivergedError} when the loss stops
 * being finite, {@link TrainingDataError} when the data does not fit the spec and RangeError for bad options.
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
  validateOptions(opts);
  const backend = await initBackend();

  const model = buildModel(valid, weights);
  const optimizer = createOptimizer(opts);
  try {
    const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
    const order = Int32Array.from({ length: data.count }, (_, i) => i);
    const prng = createPrng(opts.seed);
    let epochStats = { loss: 0, correct: 0, samples: 0 };
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      shuffle(order, prng);
      epochStats = { loss: 0, correct: 0, samples: 0 };
      for (let batch = 0, start = 0; start < data.count; batch++, start += opts.batchSize) {
        const indices = order.subarray(start, Math.min(start + opts.batchSize, data.count));
        const step = trainStep(model, optimizer, variables, valid.classes, data, indices);
        if (step.nonFinite) throw new TrainingDivergedError(epoch, batch, NaN, 'the model output NaN or infinite probabilities');
        if (!Number.isFinite(step.loss)) throw new TrainingDivergedError(epoch, batch, step.loss);
        epochStats.loss += step.loss * indices.length;
        epochStats.correct += step.correct;
        epochStats.samples += indices.length;
        // Training runs synchronously on wasm/cpu; give the agent's network I/O (keepalives, task stream) a turn.
        await yieldToEventLoop();
      }
      log.debug(
        { epoch: epoch + 1, loss: epochStats.loss / epochStats.samples, accuracy: epochStats.correct / epochStats.samples },
        'epoch finished',
      );
    }
    const trained = getFlatWeights(model);
    // The last update happens after the last loss was measured, so it could still have produced NaN weights.
    if (!trained.every(Number.isFinite)) {
      const lastBatch = Math.ceil(data.count / opts.batchSize) - 1;
      throw new TrainingDivergedError(opts.epochs - 1, lastBatch, NaN, 'the last update made weights non-finite');
    }
    const result: TrainResult = {
      weights: trained,
      loss: epochStats.loss / epochStats.samples,
      accuracy: epochStats.correct / epochStats.samples,
      samples: data.count,
      backend: backend.name,
      seconds: (performance.now() - started) / 1000,
    };
    log.info(
      { samples: result.samples, epochs: opts.epochs, loss: result.loss, accuracy: result.accuracy, seconds: result.seconds, backend: result.backend },
      'local training finished',
    );
    return result;
  } finally {
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
): StepResult {
  const { xs, ys } = batchTensors(data, indices);
  let stats: tf.Tensor1D | undefined;
  try {
    // The cost is read from `stats` (one transfer with the accuracy), so minimize need not return it.
    optimizer.minimize(
      () => {
        const probs = model.apply(xs, { training: true }) as tf.Tensor2D;
        const [loss, extra] = lossAndStats(probs, ys, classes);
        // keep() lets the accuracy and NaN count outlive minimize's internal tidy.
        stats = tf.keep(extra);
        return loss;
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

/** [mean loss, correct count, non-finite probability count] for one batch, loss first as a differentiable scalar. */
function lossAndStats(probs: tf.Tensor2D, labels: tf.Tensor1D, classes: number): [tf.Scalar, tf.Tensor1D] {
  const oneHot = tf.oneHot(labels, classes);
  const clipped = tf.clipByValue(probs, EPSILON, 1 - EPSILON);
  const loss = tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.log(clipped)), 1))) as tf.Scalar;
  const correct = tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'float32'));
  const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(probs)), 'float32'));
  return [loss, tf.stack([loss, correct, nonFinite]) as tf.Tensor1D];
}

function readStats(stats: tf.Tensor1D): StepResult {
  const [loss = NaN, correct = 0, nonFinite = 0] = stats.dataSync();
  stats.dispose();
  return { loss, correct, nonFinite: nonFinite > 0 };
}

/** Gathers the chosen images into one contiguous NHWC batch (plus their labels). */
function batchTensors(data: LabeledImages, indices: Int32Array): { xs: tf.Tensor4D; ys: tf.Tensor1D } {
  const imageSize = data.height * data.width * data.channels;
  const pixels = new Float32Array(indices.length * imageSize);
  const labels = new Int32Array(indices.length);
  indices.forEach((source, i) => {
    pixels.set(data.images.subarray(source * imageSize, (source + 1) * imageSize), i * imageSize);
    labels[i] = data.labels[source]!;
  });
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

function validateOptions(opts: TrainOptions): void {
  const problems: string[] = [];
  if (opts.optimizer !== undefined && !OPTIMIZERS.includes(opts.optimizer)) {
    problems.push(`optimizer must be one of ${OPTIMIZERS.join(', ')}, got ${String(opts.optimizer)}`);
  }
  if (!Number.isInteger(opts.epochs) || opts.epochs < 1) problems.push(`epochs must be an integer >= 1, got ${opts.epochs}`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) problems.push(`batchSize must be an integer >= 1, got ${opts.batchSize}`);
  if (!Number.isFinite(opts.learningRate) || opts.learningRate <= 0) problems.push(`learningRate must be a finite number > 0, got ${opts.learningRate}`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffff_ffff) problems.push(`seed must be an unsigned 32-bit integer, got ${opts.seed}`);
  if (problems.length > 0) throw new RangeError(`invalid training options: ${problems.join('; ')}`);
}
