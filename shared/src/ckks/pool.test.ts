import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CkksContext, CkksError, CkksWorkerPool, DEFAULT_CKKS_PARAMETERS, sumErrorBound } from './index.js';

const N = DEFAULT_CKKS_PARAMETERS.polyModulusDegree;

describe('CKKS worker pool', () => {
  let context: CkksContext;
  let pool: CkksWorkerPool;
  let secretKey: Uint8Array;
  let publicParams: Uint8Array;

  beforeAll(async () => {
    // Worker threads run compiled JavaScript: build shared/dist (incremental, fast when up to date).
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-b', fileURLToPath(new URL('../..', import.meta.url))], { stdio: 'inherit' });
    context = await CkksContext.create();
    ({ secretKey, publicParams } = context.generateKeys());
    pool = await CkksWorkerPool.create({ threads: 2, workerUrl: new URL('../../dist/ckks/worker.js', import.meta.url) });
  });

  afterAll(async () => {
    await pool.close();
    context.dispose();
  });

  it('produces payloads the single-threaded codec reads, and decrypts exactly as it does', async () => {
    const length = 5 * N + 77;
    const a = new Float64Array(length).map((_, i) => Math.sin(i) * 1000);
    const b = new Float32Array(length).map((_, i) => Math.cos(i) * 10);
    const acc = context.createAccumulator(publicParams);
    const fromPool = await pool.encryptVector(a, secretKey);
    expect(fromPool.buffer).toBeInstanceOf(ArrayBuffer);
    acc.add(fromPool);
    acc.add(context.encryptVector(b, secretKey));
    const aggregate = acc.result();
    const sum = await pool.decryptVector(aggregate, secretKey);
    expect(Array.from(sum)).toEqual(Array.from(context.decryptVector(aggregate, secretKey)));
    let max = 0;
    for (let i = 0; i < length; i++) max = Math.max(max, Math.abs((sum[i] as number) - ((a[i] as number) + (b[i] as number))));
    expect(max).toBeLessThanOrEqual(sumErrorBound(context.parameters, 2));
  });

  it('reports refusals from the calling thread and from the workers as CkksErrors', async () => {
    const v = new Float32Array(2 * N + 1).fill(1);
    const bad = v.slice();
    bad[3] = 1e9;
    await expect(pool.encryptVector(bad, secretKey)).rejects.toMatchObject({ code: 'VALUE_OUT_OF_RANGE' });
    const foreign = context.generateKeys();
    const payload = await pool.encryptVector(v, secretKey);
    await expect(pool.decryptVector(payload, foreign.secretKey)).rejects.toMatchObject({ code: 'KEY_MISMATCH' });
    // A coefficient out of range behind a valid checksum is only seen by the thread that reads it.
    const tampered = payload.slice();
    const lastC0 = tampered.length - 4 - 11776;
    tampered.fill(0xff, lastC0, lastC0 + 6);
    new DataView(tampered.buffer).setUint32(tampered.length - 4, crc32(tampered.subarray(0, tampered.length - 4)), true);
    const refused = pool.decryptVector(tampered, secretKey);
    await expect(refused).rejects.toBeInstanceOf(CkksError);
    await expect(refused).rejects.toMatchObject({ code: 'CORRUPT', message: /ciphertext 1 / });
    // The pool still works afterwards.
    const back = await pool.decryptVector(payload, secretKey);
    expect(Math.abs((back[0] as number) - 1)).toBeLessThan(1e-6);
  });

  it('sums on the threads exactly what the single-threaded accumulator sums, refusing a bad update without touching the sum', async () => {
    const length = 7 * N + 5;
    const vectors = [0, 1, 2].map((k) => new Float32Array(length).map((_, i) => Math.sin(i + k) * 100));
    const payloads = vectors.map((v) => context.encryptVector(v, secretKey));
    const single = context.createAccumulator(publicParams);
    const parallel = await pool.createAccumulator(publicParams);
    for (const p of payloads.slice(0, 2)) {
      single.add(p);
      await parallel.add(p, { vectorLength: length });
    }
    // A coefficient out of range in the last ciphertext, behind a valid checksum: only a thread sees it.
    const tampered = payloads[2]!.slice();
    const lastC0 = tampered.length - 4 - 11776;
    tampered.fill(0xff, lastC0, lastC0 + 6);
    new DataView(tampered.buffer).setUint32(tampered.length - 4, crc32(tampered.subarray(0, tampered.length - 4)), true);
    await expect(parallel.add(tampered, { vectorLength: length })).rejects.toMatchObject({ code: 'CORRUPT', message: /ciphertext 6 / });
    // Not one site's update of the round's length: refused before any thread reads it.
    await expect(parallel.add(payloads[2]!, { vectorLength: length + 1 })).rejects.toMatchObject({ code: 'LENGTH_MISMATCH' });
    await expect(parallel.add(single.result(), { vectorLength: length })).rejects.toMatchObject({ code: 'CORRUPT', message: /not an aggregate of 2 sites/ });
    await expect(parallel.add(payloads[0]!)).rejects.toMatchObject({ code: 'DUPLICATE' });
    single.add(payloads[2]!);
    await parallel.add(payloads[2]!);
    expect(parallel.sites).toBe(3);
    expect(Buffer.from(parallel.result()).equals(Buffer.from(single.result()))).toBe(true);
  });
});