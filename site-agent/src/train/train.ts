import { availableParallelism } from 'node:os';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { createLogger, createPrng, deriveSeed, isLinearModelSpec, modelOutputShape, parseModelSpec, type ResolvedModelSpec, type ModelSpec, type Prng } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';
import { augmentationProblems } from './augment.js';
import { buildModel } from './model.js';
import { createFlatOptimizer } from './parallel/flat-optimizer.js';
import { EPSILON } from './parallel/slice-gradients.js';
import { fillBatch, LocalSteps, ThreadedSteps, type Augment, type StepRunner } from './parallel/steps.js';
import type { SliceStats } from './parallel/slice-gradients.js';
import { isSegmentation, maskProblems, maskTensor, segmentationEvaluationStats, type SegmentationImages } from './segmentation.js';
import { dpSgdProblems, poissonCapacity, poissonSample, privatizeGradient } from './dp/dp-sgd.js';
import { TrainingDataError, TrainingDivergedError } from './errors.js';
import { evaluateLinear, predictLinear, trainLinear } from './linear/index.js';
import type { BackendName, EvaluationResult, LabeledImages, Optimizer, TrainOptions, TrainResult } from './types.js';

const log = createLogger('site-agent.train');

/** Forward-only batches can be larger than training batches; this bounds peak memory on 512x512 inputs. */
const EVAL_BATCH_SIZE = 64;
/** deriveSeed stream of the augmentation PRNG, kept apart from the shuffle stream so shuffling is unchanged by it. */
const AUGMENTATION_STREAM = 1;

export { TrainingDataError, TrainingDivergedError };

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
  data: SegmentationImages,
  opts: TrainOptions,
): Promise<TrainResult> {
  const started = performance.now();
  const valid = parseModelSpec(spec);
  validateData(valid, data);
  validateOptions(opts, valid.classes);
  // Linear models on image features train without TensorFlow.js.
  if (isLinearModelSpec(valid)) return trainLinear(valid, weights, data, opts);
  if (isSegmentation(valid)) {
    // Per-example gradients and class weights are written for one label per image.
    const unsupported = [...(opts.privacy ? ['privacy (DP-SGD)'] : []), ...(opts.classWeights !== undefined ? ['classWeights'] : [])];
    if (unsupported.length > 0) throw new RangeError(`invalid training options: ${unsupported.join(' and ')} are not supported for a segmentation model (${valid.architecture}) yet`);
  }
  const backend = await initBackend();
  const threads = trainingThreads(opts.threads ?? 1, backend.name);
  const classWeights = classWeightVector(opts, data, valid.classes);
  const dp = opts.privacy;
  // A batch larger than the data samples every image every step (and the mean is over all of them).
  const sampleRate = Math.min(1, opts.batchSize / data.count);
  const maxBatch = dp ? poissonCapacity(opts.batchSize, data.count) : Math.min(opts.batchSize, data.count);
  const gradientOptions = { clipNorm: dp?.clipNorm, crossEntropy: opts.segmentationLoss !== 'dice' };
  const runner =
    threads > 1
      ? await ThreadedSteps.start(threads, backend.name, valid, weights, maxBatch, classWeights, gradientOptions)
      : new LocalSteps(valid, weights, maxBatch, classWeights, gradientOptions);
  try {
    const optimizer = createFlatOptimizer(opts.optimizer ?? 'sgd', opts.learningRate, weights.length);
    // mu = 0 skips the term entirely, so the result is bit for bit that of no term.
    const proximal = opts.proximalMu !== undefined && opts.proximalMu > 0 ? { mu: opts.proximalMu, globals: weights.slice() } : undefined;
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
    /**
     * Step s's batch, its first `count` images in batch buffer s % 2: the epoch's order reshuffled at its first batch,
     * as the seed dictates; with DP-SGD a Poisson sample instead, whose images past the buffer's capacity are `rest`.
     */
    const batchOf = (s: number): StepBatch => {
      const batch = s % batchesPerEpoch;
      const epoch = Math.floor(s / batchesPerEpoch);
      if (dp) {
        const sample = poissonSample(data.count, sampleRate);
        const first = sample.subarray(0, maxBatch);
        if (first.length > 0) fillBatch(runner.batch((s % 2) as 0 | 1), data, first, augment);
        return { epoch, batch, count: first.length, rest: sample.subarray(first.length) };
      }
      if (batch === 0) shuffle(order, prng);
      const start = batch * opts.batchSize;
      const indices = order.subarray(start, Math.min(start + opts.batchSize, data.count));
      fillBatch(runner.batch((s % 2) as 0 | 1), data, indices, augment);
      return { epoch, batch, count: indices.length, rest: indices.subarray(indices.length) };
    };
    let clipped = 0;
    let sampled = 0;
    let next = batchOf(0);
    let last = next;
    for (let step = 0; step < totalSteps; step++) {
      const current = next;
      last = current;
      const k = (step % 2) as 0 | 1;
      const running = current.count > 0 ? runner.run(k, current.count) : Promise.resolve(emptyStep(runner.weights.length));
      // The next batch is gathered (and augmented) while the threads work on this one.
      if (step + 1 < totalSteps) next = batchOf(step + 1);
      const { gradient, stats } = current.rest.length > 0 ? await withRest(runner, k, await running, current.rest, data, augment) : await running;
      const samples = current.count + current.rest.length;
      const loss = samples > 0 ? stats.loss / samples : 0;
      if (stats.nonFinite > 0) throw new TrainingDivergedError(current.epoch, current.batch, NaN, 'the model output NaN or infinite probabilities');
      if (!Number.isFinite(loss)) throw new TrainingDivergedError(current.epoch, current.batch, loss);
      // The batch's mean gradient (the slices' sum over the batch size; with DP-SGD the noisy clipped sum over the
      // expected batch size), plus FedProx's mu·(w − w_global), which depends on no image.
      const w = runner.weights;
      if (dp) {
        privatizeGradient(gradient, dp, sampleRate * data.count);
        clipped += stats.clipped;
        sampled += samples;
      } else for (let i = 0; i < gradient.length; i++) gradient[i] = (gradient[i] as number) / current.count;
      if (proximal) for (let i = 0; i < gradient.length; i++) gradient[i] = (gradient[i] as number) + proximal.mu * ((w[i] as number) - (proximal.globals[i] as number));
      optimizer.step(w, gradient);
      recent[step % window] = { loss: stats.loss, correct: stats.correct, samples };
      if (current.batch === batchesPerEpoch - 1) {
        // A completed epoch implies window = batches per epoch, so the window is exactly this epoch.
        const epochStats = windowStats(recent, step + 1, window);
        log.debug({ epoch: current.epoch + 1, loss: epochStats.loss / epochStats.samples, accuracy: epochStats.correct / epochStats.samples }, 'epoch finished');
      }
      // On one thread training runs synchronously; give the agent's network I/O (keepalives, task stream) a turn.
      if (threads === 1) await yieldToEventLoop();
    }
    const trained = runner.weights.slice();
    // The last update happens after the last loss was measured, so it could still have produced NaN weights.
    if (!trained.every(Number.isFinite)) {
      throw new TrainingDivergedError(last.epoch, last.batch, NaN, 'the last update made weights non-finite');
    }
    const figures = windowStats(recent, totalSteps, window);
    const result: TrainResult = {
      weights: trained,
      // A DP window can (rarely) sample no image at all.
      loss: figures.samples > 0 ? figures.loss / figures.samples : NaN,
      accuracy: figures.samples > 0 ? figures.correct / figures.samples : NaN,
      samples: data.count,
      steps: totalSteps,
      backend: backend.name,
      threads,
      seconds: (performance.now() - started) / 1000,
      ...(dp
        ? { privacy: { sampleRate, steps: totalSteps, noiseMultiplier: dp.noiseMultiplier, clipNorm: dp.clipNorm, clippedFraction: sampled > 0 ? clipped / sampled : 0 } }
        : {}),
    };
    log.info(
      {
        samples: result.samples,
        ...(opts.steps !== undefined ? { steps: opts.steps } : { epochs: opts.epochs }),
        loss: result.loss,
        accuracy: result.accuracy,
        seconds: result.seconds,
        backend: result.backend,
        threads,
      },
      'local training finished',
    );
    return result;
  } finally {
    runner.close();
  }
}

/** site.yaml's training.threads as a count: 'auto' is every core this process may use. */
export function configuredThreads(setting: 'auto' | number): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

/**
 * Threads a training on `backend` uses for `asked` (an integer >= 1): as asked on wasm and cpu, whose kernels run
 * on one core each; one on the native TensorFlow backends, which spread every kernel over the cores themselves.
 */
export function trainingThreads(asked: number, backend: BackendName): number {
  if (!Number.isInteger(asked) || asked < 1 || asked > 256) throw new RangeError(`threads must be an integer in [1, 256], got ${asked}`);
  return backend === 'wasm' || backend === 'cpu' ? asked : 1;
}

/**
 * Mean loss and accuracy of the model with `weights` over all of `data`, without changing anything. For a segmentation
 * model the loss is the training loss (soft Dice plus cross-entropy) and accuracy the mean per-image Dice.
 */
export async function evaluateModel(spec: ModelSpec, weights: Float32Array, data: SegmentationImages): Promise<EvaluationResult> {
  const valid = parseModelSpec(spec);
  validateData(valid, data);
  if (isLinearModelSpec(valid)) return evaluateLinear(valid, weights, data);
  const segmentation = isSegmentation(valid);
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
        const probs = model.apply(xs, { training: false });
        // Segmentation: accuracy is the mean per-image Dice of the arg-max labels over the foreground classes.
        return segmentation
          ? segmentationEvaluationStats(probs as tf.Tensor4D, maskTensor(data, indices), valid.classes)
          : evaluationStats(probs as tf.Tensor2D, ys, valid.classes);
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

/** A step's images: `count` in its batch buffer, and any Poisson-sampled beyond the buffer's capacity. */
interface StepBatch {
  epoch: number;
  batch: number;
  count: number;
  rest: Int32Array;
}

/** A step with no image (a DP-SGD Poisson sample can be empty): a zero gradient, to which only noise is added. */
function emptyStep(size: number): { gradient: Float32Array; stats: SliceStats } {
  return { gradient: new Float32Array(size), stats: { loss: 0, correct: 0, nonFinite: 0, clipped: 0 } };
}

/**
 * Adds the gradients of a Poisson sample's images past the batch buffer's capacity, a buffer's worth at a time
 * through batch buffer k (free again once its step returned), to the first part's.
 */
async function withRest(
  runner: StepRunner,
  k: 0 | 1,
  first: { gradient: Float32Array; stats: SliceStats },
  rest: Int32Array,
  data: LabeledImages,
  augment: Augment | undefined,
): Promise<{ gradient: Float32Array; stats: SliceStats }> {
  const gradient = first.gradient.slice();
  const stats = { ...first.stats };
  const capacity = runner.batch(k).labels.length;
  for (let start = 0; start < rest.length; start += capacity) {
    const part = rest.subarray(start, start + capacity);
    fillBatch(runner.batch(k), data, part, augment);
    const more = await runner.run(k, part.length);
    for (let i = 0; i < gradient.length; i++) gradient[i] = (gradient[i] as number) + (more.gradient[i] as number);
    stats.loss += more.stats.loss;
    stats.correct += more.stats.correct;
    stats.nonFinite += more.stats.nonFinite;
    stats.clipped += more.stats.clipped;
  }
  return { gradient, stats };
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
 * The model's class probabilities (softmax outputs) for every image of `data`, row-major [count x classes] (a
 * segmentation model: [count x height x width x classes]), as float64 so callers can bin and rank them without
 * another copy. Forward pass only, never augmented.
 */
export async function predictProbabilities(spec: ModelSpec, weights: Float32Array, data: SegmentationImages): Promise<Float64Array> {
  const valid = parseModelSpec(spec);
  validateData(valid, data);
  if (isLinearModelSpec(valid)) return predictLinear(valid, weights, data);
  await initBackend();
  const model = buildModel(valid, weights);
  try {
    const perImage = modelOutputShape(valid).reduce((a, b) => a * b, 1);
    const out = new Float64Array(data.count * perImage);
    for (let start = 0; start < data.count; start += EVAL_BATCH_SIZE) {
      const indices = Int32Array.from({ length: Math.min(EVAL_BATCH_SIZE, data.count - start) }, (_, i) => start + i);
      const probs = tf.tidy(() => model.apply(batchTensors(data, indices).xs, { training: false }) as tf.Tensor);
      try {
        out.set(probs.dataSync(), start * perImage);
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

/** [mean cross-entropy, correct count, non-finite probability count] of one evaluation batch. */
function evaluationStats(probs: tf.Tensor2D, labels: tf.Tensor1D, classes: number): tf.Tensor1D {
  const oneHot = tf.oneHot(labels, classes);
  const perSample = tf.neg(tf.sum(tf.mul(oneHot, tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON))), 1));
  const correct = tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'float32'));
  const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(probs)), 'float32'));
  return tf.stack([tf.mean(perSample), correct, nonFinite]) as tf.Tensor1D;
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

function readStats(stats: tf.Tensor1D): { loss: number; correct: number; nonFinite: boolean } {
  const [loss = NaN, correct = 0, nonFinite = 0] = stats.dataSync();
  stats.dispose();
  return { loss, correct, nonFinite: nonFinite > 0 };
}

/** Gathers the chosen images into one contiguous NHWC batch (plus their labels), for evaluation. */
function batchTensors(data: LabeledImages, indices: Int32Array): { xs: tf.Tensor4D; ys: tf.Tensor1D } {
  const imageSize = data.height * data.width * data.channels;
  const batch = { pixels: new Float32Array(indices.length * imageSize), labels: new Int32Array(indices.length) };
  fillBatch(batch, data, indices);
  return {
    xs: tf.tensor4d(batch.pixels, [indices.length, data.height, data.width, data.channels], 'float32'),
    ys: tf.tensor1d(batch.labels, 'int32'),
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

function validateData(spec: ResolvedModelSpec, data: SegmentationImages): void {
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
  if (isSegmentation(spec)) for (const problem of maskProblems(spec, data)) fail(problem);
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
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1 || opts.threads > 256)) problems.push(`threads must be an integer in [1, 256], got ${opts.threads}`);
  if (opts.privacy !== undefined) problems.push(...dpSgdProblems(opts.privacy));
  const mu = opts.proximalMu;
  if (mu !== undefined && (!Number.isFinite(mu) || mu < 0)) problems.push(`proximalMu must be a finite number >= 0, got ${mu}`);
  if (problems.length > 0) throw new RangeError(`invalid training options: ${problems.join('; ')}`);
}
