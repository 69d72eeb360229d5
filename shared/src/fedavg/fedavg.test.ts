import { describe, expect, it } from 'vitest';
import { applyAggregate, bytesToFloat32, float32ToBytes, UpdateAccumulator, weightedUpdateVector } from './index.js';

describe('FedAvg vectors', () => {
  it('sums weighted updates into the sample-weighted mean of the trained models', () => {
    const base = Float32Array.from([0.5, -1, 2]);
    const a = Float32Array.from([1, 0, 2]);
    const b = Float32Array.from([0, -2, 3]);
    const acc = new UpdateAccumulator(4);
    acc.add(weightedUpdateVector(base, a, 30));
    acc.add(weightedUpdateVector(base, b, 10));
    const next = applyAggregate(base, acc.sum);
    // Weighted mean of a and b with weights 3:1.
    expect(Array.from(next)).toEqual([0.75, -0.5, 2.25]);
    expect(acc.count).toBe(2);
  });

  it('refuses vectors of the wrong length or with a non-positive weight', () => {
    const acc = new UpdateAccumulator(3);
    expect(() => acc.add(new Float32Array(4))).toThrow(/4 values, expected 3/);
    expect(() => acc.add(Float32Array.from([1, 1, 0]))).toThrow(/weight slot/);
    expect(() => acc.add(Float32Array.from([Number.NaN, 1, 1]))).toThrow(/not finite/);
    expect(() => weightedUpdateVector(new Float32Array(2), new Float32Array(3), 1)).toThrow(/3 values/);
    expect(() => weightedUpdateVector(new Float32Array(2), new Float32Array(2), 0)).toThrow(/positive/);
  });

  it('round-trips float32 vectors through little-endian bytes', () => {
    const v = Float32Array.from([1.5, -0, 3.25e-8, -7e20]);
    const bytes = float32ToBytes(v);
    expect(bytes[0]).toBe(0);
    expect(bytes[3]).toBe(0x3f);
    expect(Array.from(bytesToFloat32(bytes))).toEqual(Array.from(v));
    expect(() => bytesToFloat32(new Uint8Array(5), 'model blob')).toThrow(/model blob has 5 bytes/);
  });
});

describe('weights a large site can send', () => {
  it('caps a site\'s weight at 10,000 samples, so a hospital with more images can still contribute to an encrypted sum', async () => {
    const { CkksContext } = await import('../ckks/index.js');
    const { contributionVector, largestChange, sampleWeight } = await import('./index.js');
    expect(sampleWeight(120)).toBe(120);
    expect(sampleWeight(250_000)).toBe(10_000);
    const base = new Float32Array(64).fill(0.1);
    const trained = base.map((w) => w + 0.5);
    expect(largestChange(base, trained)).toBeCloseTo(0.5, 6);
    const ckks = await CkksContext.create();
    try {
      const key = ckks.generateKeys().secretKey;
      // Uncapped, the weight itself is out of the codec's range; capped, it encrypts.
      expect(() => ckks.encryptVector(contributionVector(base, trained, 250_000, ['a', 'b'], 'a'), key)).toThrow(/1e\+?4|10000|out of range/i);
      const sent = ckks.encryptVector(contributionVector(base, trained, sampleWeight(250_000), ['a', 'b'], 'a'), key);
      expect(ckks.decryptVector(sent, key)[64]).toBeCloseTo(10_000, 3);
    } finally {
      ckks.dispose();
    }
  });
});
