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
  const stored = (sha256: string): Promise<Uint8Array> => Promise.resolve(payloads[shas.indexOf(sha256)]!);

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
    await aggregation.addToRound('round-1', shas[0]!, payloads[0]!, length);
    await aggregation.addToRound('round-1', shas[1]!, payloads[1]!, length);
    const result = await aggregation.sumRound('round-1', [shas[1]!, shas[0]!], () => Promise.reject(new Error('no stored update should be read')));
    expect(result.sites).toBe(2);
    expect(maxError(decryptedSum(result.bytes), [0, 1])).toBeLessThanOrEqual(sumErrorBound(site.parameters, 2));
  });

  it('refuses a damaged or mis-sized update with INVALID_ARGUMENT and keeps the sum as it was', async () => {
    await aggregation.addToRound('round-2', shas[0]!, payloads[0]!, length);
    const damaged = payloads[1]!.slice();
    damaged[damaged.length - 100] = (damaged[damaged.length - 100] as number) ^ 1;
    await expect(aggregation.addToRound('round-2', 'x', damaged, length)).rejects.toThrow(FederationError);
    await expect(aggregation.addToRound('round-2', 'x', payloads[1]!, length + 1)).rejects.toThrow(/encrypted update refused \(LENGTH_MISMATCH\)/);
    const result = await aggregation.sumRound('round-2', [shas[0]!], stored);
    expect(maxError(decryptedSum(result.bytes), [0])).toBeLessThanOrEqual(sumErrorBound(site.parameters, 1));
  });

  it('sums the stored updates again when the running sum is not exactly the receipts (or was lost in a restart)', async () => {
    await aggregation.addToRound('round-3', shas[0]!, payloads[0]!, length);
    await aggregation.addToRound('round-3', shas[1]!, payloads[1]!, length);
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
