import { inSharedMemory, type CkksWorkerPool } from '../pool.js';
import type { MultipartyParameters } from './params.js';
import {
  allocatePayload,
  ciphertextCount,
  decodeCiphertexts,
  decryptVector,
  encodeCiphertexts,
  encryptVector,
  labelled,
  openPayload,
  shareForSum,
  type PayloadHeader,
  sumUpdates,
  switchedModel,
} from './payload.js';
import { skipEncryptionRandomness, skipSmudgingRandomness } from './protocol.js';
import type { MultipartyRange, StreamPositions } from './ranges.js';
import type { RnsRing, SeededStream } from './ring.js';

/**
 * The multiparty vector operations of payload.ts on the threads of a CkksWorkerPool, each thread taking a range of
 * the vector's ciphertexts (ranges.ts). Every result is byte for byte what the single-threaded function returns:
 * a ciphertext's randomness is read from where one thread would have read it (the calling thread walks the stream
 * first, skipping what each ciphertext draws), and refusals name the same ciphertext. Small vectors, or no
 * threading, run the single-threaded function itself.
 */

/** Where multiparty vector work runs. */
export interface MultipartyThreading {
  /** Threads the pool has (below 2, everything stays on the calling thread). */
  threads: number;
  /** The pool, made when first needed: small vectors never start threads. */
  pool(): Promise<CkksWorkerPool>;
  /** Fewest ciphertexts worth handing to the threads; MIN_POOLED_CIPHERTEXTS when absent. */
  minCiphertexts?: number;
}

/** Below this, the messages and shared copies cost more than a few milliseconds of work per ciphertext saves. */
export const MIN_POOLED_CIPHERTEXTS = 8;

type Job = Omit<MultipartyRange, 'first' | 'count'>;

/** The pool for a vector of `ciphertexts`, or undefined to stay on this thread. */
async function poolFor(threading: MultipartyThreading | undefined, ciphertexts: number): Promise<CkksWorkerPool | undefined> {
  if (!threading || threading.threads < 2 || ciphertexts < (threading.minCiphertexts ?? MIN_POOLED_CIPHERTEXTS)) return undefined;
  return threading.pool();
}

/** Ciphertexts of a valid count, 0 otherwise (the single-threaded function then refuses it as it always has). */
const ciphertextsOf = (ring: RnsRing, valueCount: number): number => (Number.isSafeInteger(valueCount) && valueCount > 0 ? ciphertextCount(ring, valueCount) : 0);

const sharedBytes = (bytes: number): Uint8Array => new Uint8Array(new SharedArrayBuffer(bytes));

/** A copy in ordinary memory: callers get what the single-threaded functions return. */
const unshared = (bytes: Uint8Array): Uint8Array => new Uint8Array(bytes);

/** Where each of `count` ciphertexts' randomness starts; leaves `random` where one thread would have left it. */
function positions(random: SeededStream, count: number, skip: () => void): StreamPositions {
  const { seed, label } = random.state();
  const offsets = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    offsets[k] = random.position;
    skip();
  }
  return { seed, label, offsets };
}

/** encodeCiphertexts(encryptVector(...)): an update blob of `values` under the collective key. */
export async function encryptUpdateThreaded(
  ring: RnsRing,
  params: MultipartyParameters,
  key: { p: Uint32Array; a: Uint32Array },
  epoch: number,
  values: ArrayLike<number>,
  random: SeededStream,
  threading?: MultipartyThreading,
): Promise<Uint8Array> {
  const header = { epoch, valueCount: values.length };
  const count = ciphertextsOf(ring, values.length);
  const pool = await poolFor(threading, count);
  if (!pool) return encodeCiphertexts(ring, params, 'update', header, encryptVector(ring, params, key, values, random));
  const out = allocatePayload(ring, params, 'update', header, sharedBytes);
  const shared = new Float64Array(new SharedArrayBuffer(8 * values.length));
  shared.set(values);
  const job: Job = { params, valueCount: values.length, job: { op: 'encrypt', key, values: shared, random: positions(random, count, () => skipEncryptionRandomness(ring, random)), out } };
  await pool.multipartyRanges(count, job);
  return unshared(out);
}

/** decodeCiphertexts of an update, for its checks only: its header, or a refusal naming the ciphertext decodeCiphertexts names. */
export async function checkUpdateThreaded(
  ring: RnsRing,
  params: MultipartyParameters,
  update: Uint8Array,
  expect: { epoch?: number; valueCount?: number },
  threading?: MultipartyThreading,
): Promise<PayloadHeader> {
  const header = openPayload(ring, params, 'update', update, expect);
  const count = ciphertextCount(ring, header.valueCount);
  const pool = await poolFor(threading, count);
  if (!pool) return decodeCiphertexts(ring, params, 'update', update, expect).header;
  await pool.multipartyRanges(count, { params, valueCount: header.valueCount, job: { op: 'check', update: inSharedMemory(update) } });
  return header;
}

/** sumUpdates: the sum-c0 and sum-c1 blobs of update blobs, each update checked and added on the threads in turn. */
export async function sumUpdatesThreaded(
  ring: RnsRing,
  params: MultipartyParameters,
  header: { epoch: number; valueCount: number },
  updates: Iterable<Uint8Array>,
  threading?: MultipartyThreading,
): Promise<{ c0: Uint8Array; c1: Uint8Array; count: number }> {
  const cts = ciphertextsOf(ring, header.valueCount);
  const pool = await poolFor(threading, cts);
  if (!pool) return sumUpdates(ring, params, header, updates);
  const sum0 = new Uint32Array(new SharedArrayBuffer(4 * cts * ring.size));
  const sum1 = new Uint32Array(new SharedArrayBuffer(4 * cts * ring.size));
  let count = 0;
  for (const update of updates) {
    // One update at a time, as sumUpdates reads them: a refusal names the same update and ciphertext.
    labelled(`update ${count}`, () => openPayload(ring, params, 'update', update, header));
    await pool.multipartyRanges(cts, { params, valueCount: header.valueCount, job: { op: 'add', update: inSharedMemory(update), index: count, sum0, sum1 } });
    count++;
  }
  if (count === 0) throw new RangeError('a sum needs at least one update');
  const c0 = allocatePayload(ring, params, 'sum-c0', header, sharedBytes);
  const c1 = allocatePayload(ring, params, 'sum-c1', header, sharedBytes);
  await pool.multipartyRanges(cts, { params, valueCount: header.valueCount, job: { op: 'pack-sums', sum0, sum1, c0, c1 } });
  return { c0: unshared(c0), c1: unshared(c1), count };
}

/** shareForSum: a site's key-switching share blob for a sum-c1 blob. */
export async function shareForSumThreaded(
  ring: RnsRing,
  params: MultipartyParameters,
  secret: Uint32Array,
  modelKeyPart: Uint32Array | null,
  c1Blob: Uint8Array,
  random: SeededStream,
  threading?: MultipartyThreading,
): Promise<Uint8Array> {
  const { epoch, valueCount } = openPayload(ring, params, 'sum-c1', c1Blob, {});
  const count = ciphertextCount(ring, valueCount);
  const pool = await poolFor(threading, count);
  if (!pool) return shareForSum(ring, params, secret, modelKeyPart, c1Blob, random);
  const out = allocatePayload(ring, params, 'share', { epoch, valueCount }, sharedBytes);
  const smudging = positions(random, count, () => skipSmudgingRandomness(ring, params, random));
  await pool.multipartyRanges(count, { params, valueCount, job: { op: 'share', secret, modelKeyPart, sum: inSharedMemory(c1Blob), random: smudging, out } });
  return unshared(out);
}

/**
 * switchedModel: C0 + sum of shares as the model blob. Every blob's header is checked first, then the bodies on the
 * threads, ciphertext by ciphertext: with corrupt bodies in two blobs, the one named may differ from switchedModel's.
 */
export async function switchedModelThreaded(
  ring: RnsRing,
  params: MultipartyParameters,
  header: { epoch: number; valueCount: number },
  c0Blob: Uint8Array,
  c1Blob: Uint8Array,
  shareBlobs: readonly Uint8Array[],
  threading?: MultipartyThreading,
): Promise<Uint8Array> {
  const count = ciphertextsOf(ring, header.valueCount);
  const pool = await poolFor(threading, count);
  if (!pool || shareBlobs.length === 0) return switchedModel(ring, params, header, c0Blob, c1Blob, shareBlobs);
  openPayload(ring, params, 'sum-c0', c0Blob, header);
  openPayload(ring, params, 'sum-c1', c1Blob, header);
  shareBlobs.forEach((blob, i) => labelled(`share ${i}`, () => openPayload(ring, params, 'share', blob, header)));
  const out = allocatePayload(ring, params, 'model', header, sharedBytes);
  const job = { op: 'switch' as const, c0: inSharedMemory(c0Blob), c1: inSharedMemory(c1Blob), shares: shareBlobs.map(inSharedMemory), out };
  await pool.multipartyRanges(count, { params, valueCount: header.valueCount, job });
  return unshared(out);
}

/** decryptVector(decodeCiphertexts(model)): a model blob's values under `key` (the epoch's model key). */
export async function decryptModelThreaded(
  ring: RnsRing,
  params: MultipartyParameters,
  model: Uint8Array,
  key: Uint32Array,
  expect: { epoch?: number; valueCount?: number },
  threading?: MultipartyThreading,
): Promise<Float64Array> {
  const { valueCount } = openPayload(ring, params, 'model', model, expect);
  const count = ciphertextCount(ring, valueCount);
  const pool = await poolFor(threading, count);
  if (!pool) return decryptVector(ring, params, decodeCiphertexts(ring, params, 'model', model, expect).ciphertexts, key, valueCount);
  const out = new Float64Array(new SharedArrayBuffer(8 * valueCount));
  await pool.multipartyRanges(count, { params, valueCount, job: { op: 'decrypt', model: inSharedMemory(model), key, out } });
  return new Float64Array(out);
}
