import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { EncryptedSum, type ExpectedUpdate } from './accumulator.js';
import { CkksContext } from './context.js';
import { CkksError, type CkksErrorCode } from './errors.js';
import { readKeyHeader } from './keys.js';
import { MultipartyPayloadError, type PayloadErrorCode } from './multiparty/payload.js';
import type { MultipartyRange } from './multiparty/ranges.js';
import { parametersFingerprint } from './params.js';
import { sealPayload } from './payload.js';
import type { RangeReply, RangeRequest } from './worker.js';

export interface CkksWorkerPoolOptions {
  /** Worker threads; defaults to the cores available. */
  threads?: number;
  /** The compiled worker module; defaults to worker.js beside this file. */
  workerUrl?: URL;
}

/** A request before the pool numbers it (Omit on each member of the union). */
type Unnumbered<T> = T extends unknown ? Omit<T, 'id'> : never;

interface Pending {
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Encrypts and decrypts large vectors on several threads (each SEAL call uses one core). Output is
 * byte-for-byte the format CkksContext produces and reads; small vectors gain nothing and can stay on
 * CkksContext. The coordinator sums on it too (createAccumulator): each thread checks and adds its own
 * range of every payload's ciphertexts into shared sums. Multiparty vectors use the same threads (multiparty/threads.ts).
 */
export class CkksWorkerPool {
  private readonly pending = new Map<number, Pending>();
  private readonly contexts = new Map<string, Promise<CkksContext>>();
  private nextId = 1;
  private closed = false;
  /** Set when a thread died: its ranges would never complete, so the pool refuses further work. */
  private broken: Error | undefined;

  private constructor(private readonly workers: Worker[]) {
    for (const worker of workers) {
      worker.on('message', (reply: RangeReply) => this.settle(reply));
      worker.on('error', (error) => this.fail(error));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new CkksError('SEAL_ERROR', `a CKKS worker thread exited with code ${code}`));
      });
    }
  }

  static async create(options: CkksWorkerPoolOptions = {}): Promise<CkksWorkerPool> {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new RangeError(`threads must be an integer in [1, 256], got ${threads}`);
    const url = options.workerUrl ?? new URL('./worker.js', import.meta.url);
    const workers = Array.from({ length: threads }, () => new Worker(url));
    return new CkksWorkerPool(workers);
  }

  get threads(): number {
    return this.workers.length;
  }

  /** Same result as CkksContext.encryptVector, computed on all threads. */
  async encryptVector(vector: Float32Array | Float64Array, secretKey: Uint8Array): Promise<Uint8Array> {
    if (!(vector instanceof Float32Array || vector instanceof Float64Array)) {
      throw new CkksError('VALUE_OUT_OF_RANGE', 'the vector to encrypt must be a Float32Array or Float64Array');
    }
    const context = await this.contextFor(secretKey);
    // A shared copy, checked after copying: the threads read it, and the caller may reuse its vector meanwhile.
    const shared =
      vector instanceof Float32Array
        ? new Float32Array(new SharedArrayBuffer(vector.byteLength))
        : new Float64Array(new SharedArrayBuffer(vector.byteLength));
    shared.set(vector);
    const { out } = context.startUpdate(shared, secretKey, (bytes) => new Uint8Array(new SharedArrayBuffer(bytes)));
    const count = Math.ceil(vector.length / context.valuesPerCiphertext);
    await this.spread(count, (first, n) => ({ op: 'encrypt', secretKey, input: shared, first, count: n, output: out }));
    const result = new Uint8Array(out.length);
    result.set(out);
    return sealPayload(result);
  }

  /** Same result as CkksContext.decryptVector, computed on all threads. */
  async decryptVector(payload: Uint8Array, secretKey: Uint8Array): Promise<Float64Array> {
    const context = await this.contextFor(secretKey);
    const { header } = context.startDecryption(payload, secretKey);
    const shared = new Uint8Array(new SharedArrayBuffer(payload.length));
    shared.set(payload);
    const out = new Float64Array(new SharedArrayBuffer(header.vectorLength * 8));
    await this.spread(header.ciphertextCount, (first, n) => ({ op: 'decrypt', secretKey, input: shared, first, count: n, output: out }));
    return new Float64Array(out);
  }

  /** A running sum whose payloads are checked and added on all threads. */
  async createAccumulator(publicParams: Uint8Array): Promise<ParallelAccumulator> {
    return new ParallelAccumulator(await this.contextFor(publicParams), publicParams, this);
  }

  /** @internal Range-checks every ciphertext of a payload (in shared memory), on all threads. */
  async checkPayloadRanges(payload: Uint8Array, ciphertexts: number, key: Uint8Array): Promise<void> {
    await this.spread(ciphertexts, (first, count) => ({ op: 'check', key, input: payload, first, count }));
  }

  /** @internal Adds every ciphertext of a checked payload (in shared memory) into the shared sums, on all threads. */
  async addPayloadRanges(payload: Uint8Array, ciphertexts: number, key: Uint8Array, sum0: Uint32Array, sum1: Uint32Array): Promise<void> {
    await this.spread(ciphertexts, (first, count) => ({ op: 'add', key, input: payload, first, count, sum0, sum1 }));
  }

  /** @internal Multiparty work on ciphertexts 0..count-1 of a vector (in shared memory), one contiguous range per thread. */
  async multipartyRanges(count: number, range: Omit<MultipartyRange, 'first' | 'count'>): Promise<void> {
    await this.spread(count, (first, n) => ({ op: 'multiparty', range: { ...range, first, count: n } }));
  }

  /** Stops the threads and frees the pool's SEAL objects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new CkksError('SEAL_ERROR', 'the CKKS worker pool was closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (const context of this.contexts.values()) (await context.catch(() => undefined))?.dispose();
  }

  private contextFor(key: Uint8Array): Promise<CkksContext> {
    if (this.closed) return Promise.reject(new CkksError('SEAL_ERROR', 'the CKKS worker pool is closed'));
    const { params } = readKeyHeader(key);
    const fingerprint = parametersFingerprint(params);
    let context = this.contexts.get(fingerprint);
    if (context === undefined) {
      context = CkksContext.create(params);
      this.contexts.set(fingerprint, context);
    }
    return context;
  }

  /** Splits ciphertexts 0..count-1 into one contiguous range per thread and waits for all of them. */
  private async spread(count: number, request: (first: number, count: number) => Unnumbered<RangeRequest>): Promise<void> {
    const ranges = Math.min(this.workers.length, count);
    const calls: Promise<void>[] = [];
    for (let r = 0; r < ranges; r++) {
      const first = Math.floor((r * count) / ranges);
      const last = Math.floor(((r + 1) * count) / ranges);
      calls.push(this.call(this.workers[r] as Worker, request(first, last - first)));
    }
    // Wait for every thread even if one fails, so no thread still writes into memory we hand back.
    const results = await Promise.allSettled(calls);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }

  private call(worker: Worker, request: Unnumbered<RangeRequest>): Promise<void> {
    if (this.closed) return Promise.reject(new CkksError('SEAL_ERROR', 'the CKKS worker pool is closed'));
    if (this.broken !== undefined) return Promise.reject(this.broken);
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...request, id } as RangeRequest);
    });
  }

  private settle(reply: RangeReply): void {
    const pending = this.pending.get(reply.id);
    if (pending === undefined) return;
    this.pending.delete(reply.id);
    if (reply.ok) pending.resolve();
    else pending.reject(errorOf(reply));
  }

  private fail(error: Error): void {
    this.broken ??= error;
    this.failAll(error);
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}

/**
 * The running sum on a worker pool: the calling thread checks a payload's framing and key, the threads check its
 * coefficients and then add their ranges into sums in shared memory. One payload at a time (adds queue), so the
 * sum and its checks always agree; a payload refused by any thread leaves the sum as it was.
 */
export class ParallelAccumulator extends EncryptedSum {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    ctx: CkksContext,
    private readonly publicParams: Uint8Array,
    private readonly pool: CkksWorkerPool,
  ) {
    super(ctx, publicParams);
  }

  /** Adds a site's update (or a saved partial aggregate); throws a CkksError naming what is wrong, adding nothing. */
  add(payload: Uint8Array, expected?: ExpectedUpdate): Promise<void> {
    const next = this.queue.then(() => this.addNow(payload, expected));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async addNow(payload: Uint8Array, expected: ExpectedUpdate | undefined): Promise<void> {
    const { header, identity } = this.admit(payload, expected);
    // Threads read the payload where it is when it already lives in shared memory (the caller may put it there).
    const shared = inSharedMemory(payload);
    await this.pool.checkPayloadRanges(shared, header.ciphertextCount, this.publicParams);
    const { sum0, sum1 } = this.sums(header, (words) => new Uint32Array(new SharedArrayBuffer(words * 4)));
    try {
      await this.pool.addPayloadRanges(shared, header.ciphertextCount, this.publicParams, sum0, sum1);
    } catch (error) {
      this.fail(error);
      throw error;
    }
    this.commit(header, identity);
  }
}

/** The error a thread threw, as the class the calling thread would have thrown. */
function errorOf(reply: Extract<RangeReply, { ok: false }>): Error {
  if (reply.name === 'MultipartyPayloadError' && reply.code !== undefined) return new MultipartyPayloadError(reply.code as PayloadErrorCode, reply.message);
  if (reply.code !== undefined) return new CkksError(reply.code as CkksErrorCode, reply.message);
  return reply.name === 'RangeError' ? new RangeError(reply.message) : new Error(reply.message);
}

/** @internal The bytes where every thread can read them: as they are when they already live in shared memory. */
export function inSharedMemory(payload: Uint8Array): Uint8Array {
  if (payload.buffer instanceof SharedArrayBuffer) return payload;
  const shared = new Uint8Array(new SharedArrayBuffer(payload.byteLength));
  shared.set(payload);
  return shared;
}
