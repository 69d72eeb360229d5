import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CkksWorkerPool } from '../pool.js';
import { deriveMultipartyParameters } from './params.js';
import { decodeCiphertexts, decryptVector, encodeCiphertexts, encryptVector, MultipartyPayloadError, payloadBytes, shareForSum, sumUpdates, switchedModel } from './payload.js';
import { collectivePublicKey, commonPolynomial, keyShare, ringOf } from './protocol.js';
import { sampleTernary, SeededStream } from './ring.js';
import { roundedBytes } from './wire.js';
import { decryptModelThreaded, encryptUpdateThreaded, shareForSumThreaded, sumUpdatesThreaded, switchedModelThreaded, type MultipartyThreading } from './threads.js';

const seed = (byte: number): Uint8Array => new Uint8Array(32).fill(byte);
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/** The error `run` rejects with, as class name, code and message. */
async function failure(run: () => unknown): Promise<{ name: string; code?: string; message: string }> {
  try {
    await run();
  } catch (error) {
    if (error instanceof MultipartyPayloadError) return { name: error.name, code: error.code, message: error.message };
    if (error instanceof Error) return { name: error.name, message: error.message };
  }
  throw new Error('expected a failure');
}

describe('multiparty vectors on worker threads', () => {
  const params = deriveMultipartyParameters();
  const ring = ringOf(params);
  // Four and a half ciphertexts: ranges of two threads, the last ciphertext partly used.
  const valueCount = ring.n * 4.5;
  const header = { epoch: 3, valueCount };
  let pool: CkksWorkerPool;
  let threading: MultipartyThreading;
  let key: { p: Uint32Array; a: Uint32Array };
  let secrets: Uint32Array[];
  let modelKey: Uint32Array;
  let values: Float64Array[];

  beforeAll(async () => {
    // Worker threads run compiled JavaScript: build shared/dist (incremental, fast when up to date).
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-b', fileURLToPath(new URL('../../..', import.meta.url))], { stdio: 'inherit' });
    pool = await CkksWorkerPool.create({ threads: 2, workerUrl: new URL('../../../dist/ckks/worker.js', import.meta.url) });
    threading = { threads: 2, pool: () => Promise.resolve(pool), minCiphertexts: 2 };
    const a = commonPolynomial(ring, seed(5), { studyId: 'study-1', epoch: 3 });
    const keys = [1, 2, 3].map((i) => keyShare(ring, a, new SeededStream(seed(10 + i), 'key-share')));
    secrets = keys.map((k) => k.secret);
    key = { p: collectivePublicKey(ring, keys.map((k) => k.publicShare)), a };
    modelKey = sampleTernary(ring, new SeededStream(seed(20), 'model-key'));
    values = [0, 1, 2].map((site) => Float64Array.from({ length: valueCount }, (_, i) => Math.sin(i * (site + 1)) * (40 + 10 * site)));
  }, 120_000);

  afterAll(async () => {
    await pool.close();
  });

  it('encrypts, sums, makes shares, switches and decrypts byte for byte as one thread does', async () => {
    const single = values.map((v) => {
      const random = new SeededStream(seed(30), 'encrypt');
      const blob = encodeCiphertexts(ring, params, 'update', header, encryptVector(ring, params, key, v, random));
      return { blob, next: random.bytes(16) };
    });
    const threaded = await Promise.all(
      values.map(async (v) => {
        const random = new SeededStream(seed(30), 'encrypt');
        const blob = await encryptUpdateThreaded(ring, params, key, header.epoch, v, random, threading);
        return { blob, next: random.bytes(16) };
      }),
    );
    threaded.forEach((t, i) => {
      expect(same(t.blob, single[i]!.blob)).toBe(true);
      expect(t.blob.buffer).toBeInstanceOf(ArrayBuffer);
      // The stream is left where one thread leaves it.
      expect(t.next).toEqual(single[i]!.next);
    });
    const updates = single.map((s) => s.blob);

    const sum = sumUpdates(ring, params, header, updates);
    const sumThreaded = await sumUpdatesThreaded(ring, params, header, updates, threading);
    expect(sumThreaded.count).toBe(3);
    expect(same(sumThreaded.c0, sum.c0) && same(sumThreaded.c1, sum.c1)).toBe(true);

    const shares = secrets.map((s, i) => shareForSum(ring, params, s, i === 0 ? modelKey : null, sum.c1, new SeededStream(seed(40 + i), 'smudging')));
    const sharesThreaded = await Promise.all(
      secrets.map((s, i) => shareForSumThreaded(ring, params, s, i === 0 ? modelKey : null, sum.c1, new SeededStream(seed(40 + i), 'smudging'), threading)),
    );
    sharesThreaded.forEach((share, i) => expect(same(share, shares[i]!)).toBe(true));

    const model = switchedModel(ring, params, header, sum.c0, sum.c1, shares);
    expect(same(await switchedModelThreaded(ring, params, header, sum.c0, sum.c1, shares, threading), model)).toBe(true);

    const plain = decryptVector(ring, params, decodeCiphertexts(ring, params, 'model', model, header).ciphertexts, modelKey, valueCount);
    const decrypted = await decryptModelThreaded(ring, params, model, modelKey, { epoch: header.epoch }, threading);
    expect(Buffer.from(decrypted.buffer).equals(Buffer.from(plain.buffer))).toBe(true);
    expect(Math.abs((decrypted[7] as number) - values.reduce((s, v) => s + (v[7] as number), 0))).toBeLessThan(1e-6);
  });

  it('refuses what one thread refuses, naming the same update and ciphertext', async () => {
    const updates = values.map((v) => encodeCiphertexts(ring, params, 'update', header, encryptVector(ring, params, key, v, new SeededStream(seed(50), 'encrypt'))));
    // A residue of update 1's ciphertext 3 (c1) set to all ones: above its prime.
    const corrupt = updates.slice();
    const bad = updates[1]!.slice();
    const c1At = 48 + 3 * (payloadBytes(ring, params, 'update', 2 * ring.n) - payloadBytes(ring, params, 'update', ring.n)) + roundedBytes(ring, params.droppedBits.c0);
    bad.fill(0xff, c1At + 100, c1At + 108);
    corrupt[1] = bad;
    const expected = await failure(() => sumUpdates(ring, params, header, corrupt));
    expect(expected).toMatchObject({ name: 'MultipartyPayloadError', message: expect.stringMatching(/^update 1: ciphertext 3/) as unknown });
    expect(await failure(() => sumUpdatesThreaded(ring, params, header, corrupt, threading))).toEqual(expected);
    expect(await failure(() => sumUpdatesThreaded(ring, params, { ...header, epoch: 4 }, updates, threading))).toMatchObject({ code: 'WRONG_EPOCH', message: /^update 0: / });

    const tooLarge = values[0]!.slice();
    tooLarge[3 * ring.n + 2] = 1e9;
    const outOfRange = await failure(() => encryptVector(ring, params, key, tooLarge, new SeededStream(seed(1), 'e')));
    expect(outOfRange.name).toBe('RangeError');
    expect(await failure(() => encryptUpdateThreaded(ring, params, key, 1, tooLarge, new SeededStream(seed(1), 'e'), threading))).toEqual(outOfRange);
  });

  it('stays on the calling thread below the threshold, starting no pool', async () => {
    const idle: MultipartyThreading = { threads: 8, pool: () => Promise.reject(new Error('no pool for a small vector')) };
    const short = values[0]!.subarray(0, 3 * ring.n);
    const blob = await encryptUpdateThreaded(ring, params, key, 1, short, new SeededStream(seed(60), 'encrypt'), idle);
    const single = encodeCiphertexts(ring, params, 'update', { epoch: 1, valueCount: short.length }, encryptVector(ring, params, key, short, new SeededStream(seed(60), 'encrypt')));
    expect(same(blob, single)).toBe(true);
  });

  it('reads any part of a seeded stream without the parts before', () => {
    const whole = new SeededStream(seed(70), 'x').bytes(100_000);
    const skipped = new SeededStream(seed(70), 'x');
    skipped.skip(40_000);
    expect(skipped.position).toBe(40_000);
    expect(skipped.bytes(30_000)).toEqual(whole.subarray(40_000, 70_000));
    expect(SeededStream.resume(skipped.state()).bytes(30_000)).toEqual(whole.subarray(70_000));
  });
});
