import { Worker } from 'node:worker_threads';
import { architectureTask, type ResolvedModelSpec } from '@federa/shared';
import type { BackendName } from '../types.js';
import type { SliceStats } from './slice-gradients.js';
import type { GradientOptions } from './steps.js';
import type { ThreadBuffers, ThreadReply, ThreadRequest } from './worker.js';

/** Raised when a training thread fails or dies: the step cannot complete, and the threads are started afresh next time. */
export class TrainingThreadError extends Error {
  override readonly name = 'TrainingThreadError';
}

interface Pending {
  resolve: (reply: Extract<ThreadReply, { ok: true }>) => void;
  reject: (error: Error) => void;
}

/** A batch buffer the main thread fills: images row-major [maxBatch, h, w, c], their labels and (segmentation) masks. */
export interface BatchBuffer {
  pixels: Float32Array;
  labels: Int32Array;
  /** Segmentation models only: per-pixel class indices [maxBatch, h, w]. */
  masks?: Uint8Array;
}

/**
 * Threads that train one model data-parallel: each computes the gradient of its contiguous slice of a batch, and
 * step() adds the slices' gradients in thread order (thread 0 first), so a given number of threads always gives the
 * same sum. The weights, the gradients and two batch buffers live in shared memory; messages carry only offsets.
 * The threads (each loading TensorFlow.js once) are kept for the process and reused by later trainings of any model.
 */
export class TrainingThreads {
  private static kept: { key: string; threads: Promise<TrainingThreads> } | undefined;

  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private broken: Error | undefined;
  private closed = false;
  private buffers: { weights: Float32Array; gradients: Float32Array[]; batches: [BatchBuffer, BatchBuffer]; sum: Float32Array } | undefined;

  private constructor(private readonly workers: Worker[]) {
    workers.forEach((worker) => {
      worker.unref();
      worker.on('message', (reply: ThreadReply) => this.settle(reply));
      worker.on('error', (error) => this.fail(new TrainingThreadError(`a training thread failed: ${error.message}`)));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new TrainingThreadError(`a training thread exited with code ${code}`));
      });
    });
  }

  /** The process's threads for this backend and count, started on first use (or again after one failed). */
  static get(threads: number, backend: BackendName, workerUrl?: URL): Promise<TrainingThreads> {
    if (!Number.isInteger(threads) || threads < 2 || threads > 256) throw new RangeError(`training threads must be an integer in [2, 256], got ${threads}`);
    const key = `${backend}/${threads}`;
    const kept = TrainingThreads.kept;
    if (kept?.key === key) return kept.threads;
    const previous = kept?.threads;
    const url = workerUrl ?? new URL('./worker.js', import.meta.url);
    const started = (async () => {
      await previous?.then((p) => p.close()).catch(() => undefined);
      return new TrainingThreads(Array.from({ length: threads }, () => new Worker(url)));
    })();
    TrainingThreads.kept = { key, threads: started };
    return started;
  }

  /** Stops the process's threads, if any were started. */
  static async closeAll(): Promise<void> {
    const kept = TrainingThreads.kept;
    TrainingThreads.kept = undefined;
    if (kept) await (await kept.threads.catch(() => undefined))?.close();
  }

  get count(): number {
    return this.workers.length;
  }

  /**
   * Gives every thread the model (its spec and the starting weights) and fresh shared buffers for batches of up to
   * `maxBatch` images. Returns the shared weight vector the optimiser updates in place between steps.
   */
  async load(backend: BackendName, spec: ResolvedModelSpec, weights: Float32Array, maxBatch: number, classWeights: Float32Array | undefined, options: GradientOptions = {}): Promise<Float32Array> {
    const imageSize = spec.inputSize * spec.inputSize * spec.channels;
    const shared = (bytes: number) => new SharedArrayBuffer(bytes);
    const weightsBuffer = shared(weights.byteLength);
    const pixels: [SharedArrayBuffer, SharedArrayBuffer] = [shared(4 * maxBatch * imageSize), shared(4 * maxBatch * imageSize)];
    const labels: [SharedArrayBuffer, SharedArrayBuffer] = [shared(4 * maxBatch), shared(4 * maxBatch)];
    const pixelsPerImage = spec.inputSize * spec.inputSize;
    const masks: [SharedArrayBuffer, SharedArrayBuffer] | null = architectureTask(spec.architecture) === 'segmentation' ? [shared(maxBatch * pixelsPerImage), shared(maxBatch * pixelsPerImage)] : null;
    const gradients = this.workers.map(() => shared(weights.byteLength));
    const view = new Float32Array(weightsBuffer);
    view.set(weights);
    this.buffers = {
      weights: view,
      gradients: gradients.map((g) => new Float32Array(g)),
      batches: [0, 1].map((k) => ({ pixels: new Float32Array(pixels[k]!), labels: new Int32Array(labels[k]!), ...(masks ? { masks: new Uint8Array(masks[k]!) } : {}) })) as [BatchBuffer, BatchBuffer],
      sum: new Float32Array(weights.length),
    };
    await Promise.all(
      this.workers.map((worker, i) => {
        const buffers: ThreadBuffers = { weights: weightsBuffer, gradient: gradients[i]!, pixels, labels, masks };
        return this.request(worker, { op: 'init', backend, spec, classWeights: classWeights ? [...classWeights] : null, clipNorm: options.clipNorm ?? null, crossEntropy: options.crossEntropy ?? true, buffers });
      }),
    );
    return view;
  }

  /** Batch buffer k (0 or 1) to fill before step(k, count). */
  batch(k: 0 | 1): BatchBuffer {
    return this.loaded().batches[k];
  }

  /**
   * The summed gradient of the first `count` images of batch buffer k over the weights as they are now, and the
   * summed figures. Each thread takes a contiguous slice (thread t: images [t·count/n, (t+1)·count/n)); a batch
   * smaller than the thread count uses one thread per image.
   */
  async step(k: 0 | 1, count: number): Promise<{ gradient: Float32Array; stats: SliceStats }> {
    const buffers = this.loaded();
    const used = Math.min(this.workers.length, count);
    const bounds = Array.from({ length: used + 1 }, (_, t) => Math.floor((t * count) / used));
    const replies = await Promise.all(
      Array.from({ length: used }, (_, t) => this.request(this.workers[t]!, { op: 'step', buffer: k, start: bounds[t]!, count: bounds[t + 1]! - bounds[t]! })),
    );
    const sum = buffers.sum;
    sum.set(buffers.gradients[0]!);
    for (let t = 1; t < used; t++) {
      const g = buffers.gradients[t]!;
      for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (g[i] as number);
    }
    const stats = { loss: 0, correct: 0, nonFinite: 0, clipped: 0 };
    for (const r of replies) {
      stats.loss += r.loss;
      stats.correct += r.correct;
      stats.nonFinite += r.nonFinite;
      stats.clipped += r.clipped;
    }
    return { gradient: sum, stats };
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private loaded(): NonNullable<TrainingThreads['buffers']> {
    if (!this.buffers) throw new Error('the training threads have no model: load() one first');
    return this.buffers;
  }

  private request(worker: Worker, request: DistributiveOmit<ThreadRequest, 'id'>): Promise<Extract<ThreadReply, { ok: true }>> {
    if (this.broken) return Promise.reject(this.broken);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...request, id });
    });
  }

  private settle(reply: ThreadReply): void {
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if (reply.ok) pending.resolve(reply);
    else pending.reject(Object.assign(new Error(reply.message), { name: reply.name }));
  }

  private fail(error: Error): void {
    this.broken ??= error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    // Started afresh on next use.
    if (TrainingThreads.kept) {
      const kept = TrainingThreads.kept;
      kept.threads.then(
        (t) => {
          if (t === this && TrainingThreads.kept === kept) TrainingThreads.kept = undefined;
        },
        () => undefined,
      );
    }
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
