import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CkksContext, sha256Hex, sumErrorBound } from '@federa/shared';
import { FederationError } from '../federation/federation-error.js';
import { EncryptedAggregation } from './encrypted-aggregation.js';

describe('encrypted aggregation on arrival', () => {
  let site: CkksContext;
  let keys: { secretKey: Uint8Array; publicParams: Uint8Array };
  let aggregation: EncryptedAggregation;
  const length = 3 * 2048 + 9;
  const vectors = [1, 2, 3].map((k) => new Float32Array(length).map((_, i) => Math.sin(i * k) * 10));
  let payloads: Uint8Array[];
  let shas: string[];
  const stored = {
    size: (sha256: string) => Promise.resolve(payloads[shas.indexOf(sha256)]!.byteLength),
    into: (sha256: string, target: Uint8Array) => Promise.resolve(target.set(payloads[shas.indexOf(sha256)]!)),
  };
  /** Every buffer an update was read into, in order. */
  const targets: Uint8Array[] = [];
  const add = (round: string, sha256: string, payload: Uint8Array, vectorLength: number) =>
    aggregation.addToRound(round, sha256, payload.byteLength, (target) => {
      targets.push(target);
      target.set(payload);
      return Promise.resolve();
    }, vectorLength);

  beforeAll(async () => {
    site = await CkksContext.create();
    keys = site.generateKeys();
    payloads = vectors.map((v) => site.encryptVector(v, keys.secretKey));
    shas = payloads.map((p) => sha256Hex(p));
    aggregation = new EncryptedAggregation(keys.publicParams, { aggregationThreads: 2 });
  });
  afterAll(async () => {
    await aggregation.onApplicationShutdown();
    site.dispose();
  });

  const decryptedSum = (bytes: Uint8Array): Float64Array => site.decryptVector(bytes, keys.secretKey);
  const maxError = (sum: Float64Array, which: number[]): number =>
    sum.reduce((m, s, i) => Math.max(m, Math.abs(s - which.reduce((t, k) => t + (vectors[k]![i] as number), 0))), 0);

  it('publishes the running sum at the close without reading a stored update again', async () => {
    await add('round-1', shas[0]!, payloads[0]!, length);
    await add('round-1', shas[1]!, payloads[1]!, length);
    const unread = () => Promise.reject(new Error('no stored update should be read'));
    const result = await aggregation.sumRound('round-1', [shas[1]!, shas[0]!], { size: unread, into: unread });
    expect(result.sites).toBe(2);
    // Both updates went through one piece of shared memory: memory does not grow with the number of sites.
    expect(targets[0]!.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(targets[1]).toBe(targets[0]);
    expect(maxError(decryptedSum(result.bytes), [0, 1])).toBeLessThanOrEqual(sumErrorBound(site.parameters, 2));
  });

  it('refuses a damaged or mis-sized update with INVALID_ARGUMENT and keeps the sum as it was', async () => {
    await add('round-2', shas[0]!, payloads[0]!, length);
    const damaged = payloads[1]!.slice();
    damaged[damaged.length - 100] = (damaged[damaged.length - 100] as number) ^ 1;
    await expect(add('round-2', 'x', damaged, length)).rejects.toThrow(FederationError);
    await expect(add('round-2', 'x', payloads[1]!, length + 1)).rejects.toThrow(/encrypted update refused \(LENGTH_MISMATCH\)/);
    const result = await aggregation.sumRound('round-2', [shas[0]!], stored);
    expect(maxError(decryptedSum(result.bytes), [0])).toBeLessThanOrEqual(sumErrorBound(site.parameters, 1));
  });

  it('sums the stored updates again when the running sum is not exactly the receipts (or was lost in a restart)', async () => {
    await add('round-3', shas[0]!, payloads[0]!, length);
    await add('round-3', shas[1]!, payloads[1]!, length);
    const mismatch = await aggregation.sumRound('round-3', [shas[0]!, shas[2]!], stored);
    expect(maxError(decryptedSum(mismatch.bytes), [0, 2])).toBeLessThanOrEqual(sumErrorBound(site.parameters, 2));
    const restarted = new EncryptedAggregation(keys.publicParams, { aggregationThreads: 1 });
    try {
      const again = await restarted.sumRound('round-3', shas, stored);
      expect(again.sites).toBe(3);
      expect(maxError(decryptedSum(again.bytes), [0, 1, 2])).toBeLessThanOrEqual(sumErrorBound(site.parameters, 3));
    } finally {
      await restarted.onApplicationShutdown();
    }
  });
});
