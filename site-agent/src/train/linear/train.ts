/**
 * Local training, evaluation and prediction for the linear models on image features (logistic-regression,
 * linear-svm), which trainLocal, evaluateModel and predictProbabilities hand over to here. The model math and the
 * SGD / Adam loop are the feature library's (features/linear-models.ts, linear-train.ts); this maps the study's
 * training options onto them and reports in the same shape as the networks.
 *
 * TrainOptions, as honoured here:
 * - epochs or steps, batchSize, learningRate, optimizer, seed (the shuffle), classWeights, proximalMu: as for the
 *   networks; privacy: DP-SGD with per-row clipping and the same accounting inputs (sampleRate, steps).
 * - augmentation: refused. Features are extracted once per image and cached; flipping or rotating the pixels
 *   every batch would mean extracting again every step, and leaves most of these features unchanged anyway.
 * - threads: ignored, and reported as 1. A step is a few thousand multiply-adds; there is nothing to spread.
 * Every parameter is kept within MAX_WEIGHT_CHANGE of the global model (projected after each step), so a round's
 * update always fits the encrypted sum's bound instead of being refused after training.
 *
 * The reported loss and accuracy are those of the trained parameters over all local images (cheap here, unlike for
 * a network, where they are the running figures of the last epoch). The loss is the model's own data loss: mean
 * cross-entropy for logistic regression, mean hinge loss for the SVM.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { createLogger, linearFeatureCount, MAX_WEIGHT_CHANGE, parameterCount, type LinearArchitectureSpec } from '@federa/shared';
import { evaluateLinearModel, LinearTrainingError, predictLinearProbabilities, trainLinearModel, type LinearModelSpec } from '../../features/index.js';
import { TrainingDivergedError } from '../errors.js';
import type { EvaluationResult, LabeledImages, TrainOptions, TrainResult } from '../types.js';
import { linearInputs } from './features.js';

const log = createLogger('site-agent.train.linear');

/** The feature library's description of the spec's model. */
function modelOf(spec: LinearArchitectureSpec): LinearModelSpec {
  return { kind: spec.architecture === 'linear-svm' ? 'svm' : 'logistic', classes: spec.classes, features: linearFeatureCount(spec) };
}

function checkWeights(spec: LinearArchitectureSpec, weights: Float32Array): void {
  const expected = parameterCount(spec);
  if (weights.length !== expected) throw new RangeError(`weight vector has ${weights.length} values but model '${spec.architecture}' has ${expected} parameters`);
  const bad = weights.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new RangeError(`weight vector value ${bad} is ${weights[bad]}; weights must be finite`);
}

/** trainLocal for a linear model; `opts` has passed trainLocal's checks. */
export async function trainLinear(spec: LinearArchitectureSpec, weights: Float32Array, data: LabeledImages, opts: TrainOptions): Promise<TrainResult> {
  const started = performance.now();
  if (opts.augmentation !== undefined) {
    throw new RangeError(
      `invalid training options: augmentation is not supported for a ${spec.architecture} model: its features are extracted once from the ` +
        'unaugmented images; leave augmentation out of the study',
    );
  }
  checkWeights(spec, weights);
  const { x } = await linearInputs(spec, data);
  let trained;
  try {
    trained = trainLinearModel(modelOf(spec), weights, x, data.labels, {
      ...(opts.steps !== undefined ? { steps: opts.steps } : { epochs: opts.epochs ?? 1 }),
      batchSize: opts.batchSize,
      learningRate: opts.learningRate,
      optimizer: opts.optimizer ?? 'sgd',
      l2: spec.l2,
      seed: opts.seed,
      ...(opts.classWeights !== undefined ? { classWeights: opts.classWeights } : {}),
      ...(opts.proximalMu !== undefined ? { proximalMu: opts.proximalMu } : {}),
      ...(opts.privacy !== undefined ? { privacy: { clipNorm: opts.privacy.clipNorm, noiseMultiplier: opts.privacy.noiseMultiplier } } : {}),
      maxParameterChange: MAX_WEIGHT_CHANGE,
    });
  } catch (error) {
    if (error instanceof LinearTrainingError) throw new TrainingDivergedError(error.epoch, error.batch, Number.NaN, error.reason);
    throw error;
  }
  const result: TrainResult = {
    weights: trained.parameters,
    loss: trained.loss,
    accuracy: trained.accuracy,
    samples: trained.samples,
    steps: trained.steps,
    // Plain JavaScript on the CPU, which is what the 'cpu' backend name stands for; no TensorFlow.js kernel runs.
    backend: 'cpu',
    threads: 1,
    seconds: (performance.now() - started) / 1000,
    ...(trained.privacy ? { privacy: trained.privacy } : {}),
  };
  log.info(
    {
      architecture: spec.architecture,
      samples: result.samples,
      features: linearFeatureCount(spec),
      ...(opts.steps !== undefined ? { steps: opts.steps } : { epochs: opts.epochs }),
      loss: result.loss,
      accuracy: result.accuracy,
      seconds: result.seconds,
    },
    'local training finished',
  );
  await yieldToEventLoop();
  return result;
}

/** evaluateModel for a linear model: mean data loss and accuracy over all of `data`. */
export async function evaluateLinear(spec: LinearArchitectureSpec, weights: Float32Array, data: LabeledImages): Promise<EvaluationResult> {
  checkWeights(spec, weights);
  const { x } = await linearInputs(spec, data);
  return evaluateLinearModel(modelOf(spec), weights, x, data.labels);
}

/**
 * predictProbabilities for a linear model, row-major [count x classes]: probabilities for logistic regression; for the
 * SVM a softmax over its margins, which ranks and arg-maxes as the margins do (what AUC, accuracy and F1 need).
 */
export async function predictLinear(spec: LinearArchitectureSpec, weights: Float32Array, data: LabeledImages): Promise<Float64Array> {
  checkWeights(spec, weights);
  const { x } = await linearInputs(spec, data);
  return predictLinearProbabilities(modelOf(spec), weights, x);
}
