/** Training consumes what the data module produces (file -> frame -> tensor -> training). */
import type { LabeledImages } from '../data/index.js';
import type { DpSgdSettings } from './dp/dp-sgd.js';

export type { LabeledImages };

export type Optimizer = 'sgd' | 'adam';

export interface TrainOptions {
  /** Full passes over the local data (integer >= 1). Give exactly one of `epochs` and `steps`. */
  epochs?: number;
  /**
   * Optimiser steps (batches) to take instead of whole epochs (integer >= 1): epochs are reshuffled and cycled until
   * this many batches have been trained, so the last epoch may be partial. `steps` = k x batches per epoch trains
   * exactly like `epochs` = k.
   */
  steps?: number;
  /** Images per SGD step (integer >= 1); the last batch of an epoch may be smaller. */
  batchSize: number;
  /** Optimiser step size (> 0). */
  learningRate: number;
  /** 'sgd' (plain, no momentum; the default) or 'adam' (moments reset every call). */
  optimizer?: Optimizer;
  /** Seeds the per-epoch shuffling (uint32), so a round can be replayed exactly. */
  seed: number;
  /**
   * Per-batch training augmentation, drawn from its own stream derived from `seed` (so the shuffle order is the
   * same with or without it). Omitted: no augmentation. Evaluation never augments.
   */
  augmentation?: AugmentationOptions;
  /**
   * Weighted cross-entropy for the training gradient. 'balanced': n_samples / (n_classes * n_c) from the local
   * training labels; a class absent locally contributes no samples, so its weight (set to 0) has no effect.
   * number[]: one finite weight > 0 per class. Omitted: unweighted. The reported `loss` stays the unweighted mean
   * so that sites with different weightings remain comparable.
   */
  classWeights?: 'balanced' | number[];
  /**
   * FedProx proximal term: (mu/2)·||w − w_global||² over all trainable weights is added to the training loss,
   * w_global being the weights trainLocal was called with (finite, >= 0). 0 or omitted: plain FedAvg training.
   * Not included in the reported `loss`.
   */
  proximalMu?: number;
  /**
   * Threads that compute each batch's gradient data-parallel (each a contiguous slice of the batch, summed in thread
   * order, one optimiser step): an integer >= 1, or omitted for one. Only the wasm and cpu backends use more than
   * one; the native TensorFlow backends parallelise each kernel themselves. See {@link trainingThreads}.
   */
  threads?: number;
  /**
   * Sample-level differential privacy (DP-SGD). Each step's batch is a Poisson sample (every image independently
   * with probability batchSize / count, from a secure random source, so batches vary in size), each image's gradient
   * is clipped to L2 norm `clipNorm`, Gaussian noise of standard deviation noiseMultiplier·clipNorm is added to the
   * batch's sum, and the sum is divided by batchSize. `epochs` then means epochs × ceil(count / batchSize) steps.
   * The privacy spent follows from (batchSize / count, noiseMultiplier, steps); see @federa/shared's accountant.
   * Omitted: ordinary training.
   */
  privacy?: DpSgdSettings;
  /**
   * Segmentation models only: the per-image loss is soft Dice over the foreground classes the image has plus
   * class-balanced cross-entropy ('dice+cross-entropy', the default), or soft Dice alone ('dice').
   */
  segmentationLoss?: 'dice+cross-entropy' | 'dice';
}

export interface AugmentationOptions {
  /** Independent 50% horizontal and 50% vertical flip per image. */
  flips: boolean;
  /** Rotation by a uniform angle in ±rotationDegrees about the image centre (nearest neighbour, 0 outside); 0..180. */
  rotationDegrees: number;
  /** Pixel values become v·(1+u) + s with u, s independently uniform in ±intensityJitter per image; 0..1. */
  intensityJitter: number;
}

export interface TrainResult {
  /** Flat weights after training, in the `describeParameters` layout. */
  weights: Float32Array;
  /**
   * Mean cross-entropy over the last epoch's samples (measured before each step's update, as Keras reports it). With
   * `steps`, over the last min(steps, batches per epoch) steps: one epoch's worth, so both modes report alike.
   */
  loss: number;
  /** Fraction of the same window's samples classified correctly (same convention as `loss`). */
  accuracy: number;
  /** Number of local training images (the FedAvg weight of this update), not multiplied by epochs or steps. */
  samples: number;
  /** Optimiser steps taken (epochs x batches per epoch, or `steps`). */
  steps: number;
  /** Backend the training ran on. */
  backend: BackendName;
  /** Threads the gradients were computed on. */
  threads: number;
  /** Wall-clock duration of the call. */
  seconds: number;
  /** With TrainOptions.privacy: what the accountant needs, and the share of example gradients the clip norm cut. */
  privacy?: { sampleRate: number; steps: number; noiseMultiplier: number; clipNorm: number; clippedFraction: number };
}

export interface EvaluationResult {
  /** Mean cross-entropy over all samples. */
  loss: number;
  /** Fraction of samples whose arg-max prediction equals the label. */
  accuracy: number;
  samples: number;
}

/**
 * Backends in auto-selection order: native libtensorflow with CUDA, WebGPU (Dawn, from npm), native on CPU,
 * WebAssembly, plain JavaScript.
 */
export type BackendName = 'tensorflow-gpu' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendPreference = 'auto' | BackendName;

export interface BackendInfo {
  name: BackendName;
  /** Human-readable description for logs and the operator UI (package, SIMD, ...). */
  detail: string;
}
