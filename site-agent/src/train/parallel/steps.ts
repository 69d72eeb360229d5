import { architectureTask, type Prng, type ResolvedModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { augmentBatch } from '../augment.js';
import { buildModel } from '../model.js';
import type { BackendName, LabeledImages, TrainOptions } from '../types.js';
import { TrainingThreads, type BatchBuffer } from './pool.js';
import { ClippedSliceGradients } from '../dp/per-example-gradients.js';
import { SegmentationSliceGradients } from './segmentation-gradients.js';
import { SliceGradients, type GradientSource, type SliceStats } from './slice-gradients.js';

export interface Augment {
  options: NonNullable<TrainOptions['augmentation']>;
  prng: Prng;
}

/** Copies the chosen images, labels and (segmentation) masks into the front of `batch`, augmenting them when asked. */
export function fillBatch(batch: BatchBuffer, data: LabeledImages & { masks?: Uint8Array | undefined }, indices: Int32Array, augment?: Augment): void {
  const imageSize = data.height * data.width * data.channels;
  const maskSize = data.height * data.width;
  const masks = batch.masks && data.masks ? { from: data.masks, to: batch.masks } : undefined;
  indices.forEach((source, i) => {
    batch.pixels.set(data.images.subarray(source * imageSize, (source + 1) * imageSize), i * imageSize);
    batch.labels[i] = data.labels[source] as number;
    masks?.to.set(masks.from.subarray(source * maskSize, (source + 1) * maskSize), i * maskSize);
  });
  if (augment) {
    const pixels = batch.pixels.subarray(0, indices.length * imageSize);
    const batchMasks = masks?.to.subarray(0, indices.length * maskSize);
    augmentBatch(pixels, indices.length, data.height, data.width, data.channels, augment.options, augment.prng, batchMasks);
  }
}

/** What shapes a step's gradient beyond the model: DP-SGD's clip norm, and whether a segmentation loss adds cross-entropy. */
export interface GradientOptions {
  clipNorm?: number | undefined;
  /** Segmentation: soft Dice plus class-balanced cross-entropy (true, the default) or soft Dice alone. */
  crossEntropy?: boolean | undefined;
}

/** The plain summed gradient, or with a clip norm DP-SGD's sum of per-example gradients clipped to it. */
export function gradientSource(model: tfl.LayersModel, spec: ResolvedModelSpec, classWeights: tf.Tensor1D | undefined, options: GradientOptions): GradientSource {
  if (architectureTask(spec.architecture) === 'segmentation') return new SegmentationSliceGradients(model, spec.classes, options.crossEntropy ?? true);
  const { clipNorm } = options;
  return clipNorm === undefined ? new SliceGradients(model, spec.classes, classWeights) : new ClippedSliceGradients(model, spec, clipNorm, classWeights);
}

/**
 * How a training computes each step's summed gradient: on this thread, or data-parallel on training threads. Either
 * way the optimiser updates `weights` in place between steps, and the next step's gradient is for those weights.
 */
export interface StepRunner {
  readonly weights: Float32Array;
  /** Batch buffer k (0 or 1): one is filled while the other's step runs. */
  batch(k: 0 | 1): BatchBuffer;
  run(k: 0 | 1, count: number): Promise<{ gradient: Float32Array; stats: SliceStats }>;
  close(): void;
}

/** One thread: the model on this thread's backend, the whole batch as one slice. */
export class LocalSteps implements StepRunner {
  readonly weights: Float32Array;
  private readonly model: tfl.LayersModel;
  private readonly classWeights: tf.Tensor1D | undefined;
  private readonly gradients: GradientSource;
  private readonly gradient: Float32Array;
  private readonly batches: [BatchBuffer, BatchBuffer];

  constructor(
    private readonly spec: ResolvedModelSpec,
    weights: Float32Array,
    maxBatch: number,
    classWeights: Float32Array | undefined,
    options: GradientOptions = {},
  ) {
    this.weights = weights.slice();
    this.model = buildModel(spec, this.weights);
    this.classWeights = classWeights ? tf.tensor1d(classWeights, 'float32') : undefined;
    this.gradients = gradientSource(this.model, spec, this.classWeights, options);
    this.gradient = new Float32Array(this.gradients.size);
    const imageSize = spec.inputSize * spec.inputSize * spec.channels;
    const segmentation = architectureTask(spec.architecture) === 'segmentation';
    const buffer = (): BatchBuffer => ({
      pixels: new Float32Array(maxBatch * imageSize),
      labels: new Int32Array(maxBatch),
      ...(segmentation ? { masks: new Uint8Array(maxBatch * spec.inputSize * spec.inputSize) } : {}),
    });
    this.batches = [buffer(), buffer()];
  }

  batch(k: 0 | 1): BatchBuffer {
    return this.batches[k];
  }

  run(k: 0 | 1, count: number): Promise<{ gradient: Float32Array; stats: SliceStats }> {
    const { inputSize, channels } = this.spec;
    const imageSize = inputSize * inputSize * channels;
    this.gradients.setWeights(this.weights);
    const batch = this.batches[k];
    const slice = {
      pixels: batch.pixels.subarray(0, count * imageSize),
      labels: batch.labels.subarray(0, count),
      count,
      height: inputSize,
      width: inputSize,
      channels,
      ...(batch.masks ? { masks: batch.masks.subarray(0, count * inputSize * inputSize) } : {}),
    };
    return Promise.resolve({ gradient: this.gradient, stats: this.gradients.compute(slice, this.gradient) });
  }

  close(): void {
    this.classWeights?.dispose();
    this.model.dispose();
  }
}

/** Several threads (TrainingThreads), each a slice of every batch. */
export class ThreadedSteps implements StepRunner {
  private constructor(
    private readonly threads: TrainingThreads,
    readonly weights: Float32Array,
  ) {}

  static async start(
    count: number,
    backend: BackendName,
    spec: ResolvedModelSpec,
    weights: Float32Array,
    maxBatch: number,
    classWeights: Float32Array | undefined,
    options: GradientOptions = {},
  ): Promise<ThreadedSteps> {
    const threads = await TrainingThreads.get(count, backend);
    return new ThreadedSteps(threads, await threads.load(backend, spec, weights, maxBatch, classWeights, options));
  }

  batch(k: 0 | 1): BatchBuffer {
    return this.threads.batch(k);
  }

  run(k: 0 | 1, count: number): Promise<{ gradient: Float32Array; stats: SliceStats }> {
    return this.threads.step(k, count);
  }

  /** The threads stay up for the next training. */
  close(): void {}
}
