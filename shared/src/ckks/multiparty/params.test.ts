import { describe, expect, it } from 'vitest';
import { ringOf } from './protocol.js';
import { DEFAULT_MULTIPARTY_REQUEST, deriveMultipartyParameters, MAX_MODULUS_BITS_128, MultipartyParameterError } from './params.js';

describe('multiparty CKKS parameters, derived', () => {
  it('meets the defaults (100 sites, 1e-6, 40-bit statistical security) at N = 4096 under 24 bytes per parameter uploaded', () => {
    const p = deriveMultipartyParameters();
    expect(p.ringDegree).toBe(4096);
    expect(p.modulusBits).toBeLessThanOrEqual(MAX_MODULUS_BITS_128[4096]!);
    expect(p.primeBits.reduce((a, b) => a + b, 0)).toBe(p.modulusBits);
    expect(p.bytesPerParameter.upload).toBeLessThanOrEqual(24);
    // The error at the smallest cohort, over Delta * W with W >= minSites, is within the accuracy asked for.
    expect(2 ** p.bounds.totalErrorLog2 / (2 ** p.scaleBits * DEFAULT_MULTIPARTY_REQUEST.minSites)).toBeLessThanOrEqual(1e-6);
    // No wrap-around: the largest sum and its error stay below q / 2, for q the product of the primes chosen.
    const q = ringOf(p).modulus;
    expect(p.bounds.largestSumLog2 + 1).toBeLessThan(Math.log2(Number(q)));
    expect(q.toString(2).length).toBe(p.modulusBits);
    // And no bit more: one bit less of modulus could not hold that sum.
    expect(p.bounds.largestSumLog2 + 1).toBeGreaterThan(p.modulusBits - 1);
    // Each site's smudging is 2^lambda times the ciphertext noise it hides.
    expect(p.smudgingLog2 - p.bounds.ciphertextNoiseLog2).toBeCloseTo(40, 6);
  });

  it('grows with what is asked: more sites or more statistical security cost bits, and N = 8192 when 4096 cannot hold them', () => {
    const small = deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, maxSites: 16 });
    const big = deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, maxSites: 2000 });
    const weaker = deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, statisticalSecurity: 30 });
    expect(small.modulusBits).toBeLessThan(deriveMultipartyParameters().modulusBits);
    expect(big.ringDegree).toBe(8192);
    expect(weaker.scaleBits).toBe(deriveMultipartyParameters().scaleBits - 10);
    expect(weaker.bytesPerParameter.upload).toBeLessThan(deriveMultipartyParameters().bytesPerParameter.upload);
  });

  it('refuses what no ring can meet, and bad requests, saying what to change', () => {
    expect(() => deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, ringDegree: 2048 })).toThrow(/N = 2048 needs a \d+-bit modulus, above the 54 bits/);
    expect(() => deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, ringDegree: 2048 })).toThrow(MultipartyParameterError);
    expect(() => deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, minSites: 0 })).toThrow(/minSites/);
    expect(() => deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, statisticalSecurity: 100 })).toThrow(/statisticalSecurity/);
    expect(() => deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, ringDegree: 1000 })).toThrow(/ringDegree must be one of/);
  });
});
