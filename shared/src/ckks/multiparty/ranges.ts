import type { MultipartyParameters } from './params.js';
import { labelled, readCiphertext, readPoly, usedIn, writeCiphertext, writePoly } from './payload.js';
import { applyKeySwitch, decrypt, encrypt, keySwitchShare, ringOf } from './protocol.js';
import { SeededStream, type RnsRing } from './ring.js';

/**
 * The per-ciphertext work of multiparty vectors, over a range of a vector's ciphertexts: what a worker thread of
 * CkksWorkerPool runs (see threads.ts for the calling side). Every ciphertext of a vector is independent, and every
 * blob, vector and sum lives in a SharedArrayBuffer, so each thread reads and writes its own ciphertexts in place.
 * Blob headers were checked and written by the calling thread; what a range finds wrong is a MultipartyPayloadError
 * naming the ciphertext, as the single-threaded decoders name it.
 */

/** Where a ciphertext's randomness starts: the stream's seed and label, and its offset per ciphertext. */
export interface StreamPositions {
  seed: Uint8Array;
  label: string;
  offsets: Float64Array;
}

export type MultipartyJob =
  /** Encrypts values into an update blob. */
  | { op: 'encrypt'; key: { p: Uint32Array; a: Uint32Array }; values: Float64Array; random: StreamPositions; out: Uint8Array }
  /** Decodes an update, only to check every residue and padding. */
  | { op: 'check'; update: Uint8Array }
  /** Decodes update `index` and adds it into the sums (ring.size words per ciphertext). */
  | { op: 'add'; update: Uint8Array; index: number; sum0: Uint32Array; sum1: Uint32Array }
  /** Writes the sums as sum-c0 and sum-c1 blobs. */
  | { op: 'pack-sums'; sum0: Uint32Array; sum1: Uint32Array; c0: Uint8Array; c1: Uint8Array }
  /** A key-switching share blob of a sum-c1 blob. */
  | { op: 'share'; secret: Uint32Array; modelKeyPart: Uint32Array | null; sum: Uint8Array; random: StreamPositions; out: Uint8Array }
  /** The model blob: C0 + sum of shares, and C1. */
  | { op: 'switch'; c0: Uint8Array; c1: Uint8Array; shares: Uint8Array[]; out: Uint8Array }
  /** Decrypts a model blob into values. */
  | { op: 'decrypt'; model: Uint8Array; key: Uint32Array; out: Float64Array };

export interface MultipartyRange {
  params: MultipartyParameters;
  /** Values in the vector (every blob's header says the same). */
  valueCount: number;
  first: number;
  count: number;
  job: MultipartyJob;
}

const rings = new Map<string, RnsRing>();

/** A thread builds each ring (its NTT tables) once. */
function ringFor(params: MultipartyParameters): RnsRing {
  const key = `${params.ringDegree}:${params.primeBits.join(',')}`;
  let ring = rings.get(key);
  if (!ring) {
    ring = ringOf(params);
    rings.set(key, ring);
  }
  return ring;
}

/** Ciphertext k's randomness, read from where one thread encrypting the whole vector would have read it. */
function streamAt(random: StreamPositions, k: number): SeededStream {
  return SeededStream.resume({ seed: random.seed, label: random.label, offset: random.offsets[k] as number });
}

/** Ciphertext k's words of a sum held as one polynomial after another. */
const polyOf = (ring: RnsRing, words: Uint32Array, k: number): Uint32Array => words.subarray(k * ring.size, (k + 1) * ring.size);

export function runMultipartyRange(range: MultipartyRange): void {
  const { params, valueCount, job } = range;
  const ring = ringFor(params);
  for (let k = range.first; k < range.first + range.count; k++) {
    switch (job.op) {
      case 'encrypt': {
        const values = job.values.subarray(k * ring.n, k * ring.n + usedIn(ring, valueCount, k));
        writeCiphertext(ring, params, 'update', valueCount, k, encrypt(ring, params, job.key, values, streamAt(job.random, k)), job.out);
        break;
      }
      case 'check':
        readCiphertext(ring, params, 'update', job.update, valueCount, k);
        break;
      case 'add': {
        const ct = labelled(`update ${job.index}`, () => readCiphertext(ring, params, 'update', job.update, valueCount, k));
        ring.add(polyOf(ring, job.sum0, k), ct.c0, polyOf(ring, job.sum0, k));
        ring.add(polyOf(ring, job.sum1, k), ct.c1, polyOf(ring, job.sum1, k));
        break;
      }
      case 'pack-sums':
        writePoly(ring, params, 'sum-c0', valueCount, k, polyOf(ring, job.sum0, k), job.c0);
        writePoly(ring, params, 'sum-c1', valueCount, k, polyOf(ring, job.sum1, k), job.c1);
        break;
      case 'share': {
        const c1 = readPoly(ring, params, 'sum-c1', job.sum, valueCount, k);
        writePoly(ring, params, 'share', valueCount, k, keySwitchShare(ring, params, job.secret, job.modelKeyPart, c1, streamAt(job.random, k)), job.out);
        break;
      }
      case 'switch': {
        const sum = { c0: readPoly(ring, params, 'sum-c0', job.c0, valueCount, k), c1: readPoly(ring, params, 'sum-c1', job.c1, valueCount, k) };
        const shares = job.shares.map((blob, i) => labelled(`share ${i}`, () => readPoly(ring, params, 'share', blob, valueCount, k)));
        writeCiphertext(ring, params, 'model', valueCount, k, applyKeySwitch(ring, sum, shares), job.out);
        break;
      }
      case 'decrypt':
        job.out.set(decrypt(ring, params, readCiphertext(ring, params, 'model', job.model, valueCount, k), job.key, usedIn(ring, valueCount, k)), k * ring.n);
        break;
    }
  }
}
