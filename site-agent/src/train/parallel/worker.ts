import { parentPort } from 'node:worker_threads';
import { parseModelSpec, type ModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../backend.js';
import { buildModel } from '../model.js';
import type { BackendName } from '../types.js';
import { gradientSource } from './steps.js';
import type { GradientSource, SliceStats } from './slice-gradients.js';

/**
 * A training thread: its own TensorFlow.js backend and copy of the model. For each step it reads the weights the
 * main thread's optimiser left in shared memory, computes the gradient of its slice of the batch, and writes it to
 * its own shared gradient buffer. It never sees the whole batch, the optimiser state, or anything else of the site.
 */

export interface ThreadBuffers {
  weights: SharedArrayBuffer;
  gradient: SharedArrayBuffer;
  /** Two batch buffers: the main thread fills one while the threads work on the other. */
  pixels: [SharedArrayBuffer, SharedArrayBuffer];
  labels: [SharedArrayBuffer, SharedArrayBuffer];
  /** Segmentation: two per-pixel class buffers beside the batch buffers; null for classification. */
  masks: [SharedArrayBuffer, SharedArrayBuffer] | null;
}

export type ThreadRequest =
  | { op: 'init'; id: number; backend: BackendName; spec: ModelSpec; classWeights: number[] | null; clipNorm: number | null; crossEntropy: boolean; buffers: ThreadBuffers }
  | { op: 'step'; id: number; buffer: 0 | 1; start: number; count: number };

export type ThreadReply = ({ id: number; ok: true } & SliceStats) | { id: number; ok: false; message: string; name: string };

interface Job {
  model: tfl.LayersModel;
  gradients: GradientSource;
  classWeights: tf.Tensor1D | undefined;
  weights: Float32Array;
  gradient: Float32Array;
  pixels: [Float32Array, Float32Array];
  labels: [Int32Array, Int32Array];
  masks: [Uint8Array, Uint8Array] | null;
  shape: [number, number, number];
}

let job: Job | undefined;

async function init(request: Extract<ThreadRequest, { op: 'init' }>): Promise<void> {
  await initBackend(request.backend);
  if (job) {
    job.classWeights?.dispose();
    job.model.dispose();
    job = undefined;
  }
  const spec = parseModelSpec(request.spec);
  const { buffers } = request;
  const weights = new Float32Array(buffers.weights);
  const model = buildModel(spec, weights);
  const classWeights = request.classWeights ? tf.tensor1d(request.classWeights, 'float32') : undefined;
  job = {
    model,
    gradients: gradientSource(model, spec, classWeights, { clipNorm: request.clipNorm ?? undefined, crossEntropy: request.crossEntropy }),
    classWeights,
    weights,
    gradient: new Float32Array(buffers.gradient),
    pixels: [new Float32Array(buffers.pixels[0]), new Float32Array(buffers.pixels[1])],
    labels: [new Int32Array(buffers.labels[0]), new Int32Array(buffers.labels[1])],
    masks: buffers.masks ? [new Uint8Array(buffers.masks[0]), new Uint8Array(buffers.masks[1])] : null,
    shape: [spec.inputSize, spec.inputSize, spec.channels],
  };
}

function step(request: Extract<ThreadRequest, { op: 'step' }>): SliceStats {
  if (!job) throw new Error('a training thread was asked for a step before it was given a model');
  const [height, width, channels] = job.shape;
  const imageSize = height * width * channels;
  job.gradients.setWeights(job.weights);
  return job.gradients.compute(
    {
      pixels: job.pixels[request.buffer].subarray(request.start * imageSize, (request.start + request.count) * imageSize),
      labels: job.labels[request.buffer].subarray(request.start, request.start + request.count),
      ...(job.masks ? { masks: job.masks[request.buffer].subarray(request.start * height * width, (request.start + request.count) * height * width) } : {}),
      count: request.count,
      height,
      width,
      channels,
    },
    job.gradient,
  );
}

const port = parentPort;
if (port) {
  // One request at a time, in order: the main thread waits for every thread's step before it sends another.
  let queue = Promise.resolve();
  port.on('message', (request: ThreadRequest) => {
    queue = queue.then(async () => {
      try {
        const stats = request.op === 'init' ? (await init(request), { loss: 0, correct: 0, nonFinite: 0, clipped: 0 }) : step(request);
        port.postMessage({ id: request.id, ok: true, ...stats } satisfies ThreadReply);
      } catch (error) {
        const e = error instanceof Error ? error : new Error(String(error));
        port.postMessage({ id: request.id, ok: false, message: e.message, name: e.name } satisfies ThreadReply);
      }
    });
  });
}
