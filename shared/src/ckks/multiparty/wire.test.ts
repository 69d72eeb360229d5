import { describe, expect, it } from 'vitest';
import { deriveMultipartyParameters } from './params.js';
import { roundLowBits, ringOf } from './protocol.js';
import { sampleUniform, SeededStream } from './ring.js';
import { packResidues, packRounded, residueBytes, roundedBits, roundedBytes, unpackResidues, unpackRounded } from './wire.js';

describe('multiparty wire forms', () => {
  const params = deriveMultipartyParameters();
  const ring = ringOf(params);
  const stream = new SeededStream(new Uint8Array(32).fill(3), 'wire-test');

  it('sends a rounded polynomial at q bits minus the dropped ones, and reads back exactly what was sent', () => {
    const dropped = params.droppedBits.c0;
    const poly = roundLowBits(ring, sampleUniform(ring, stream), dropped);
    const out = new Uint8Array(roundedBytes(ring, dropped) + 3);
    const end = packRounded(ring, poly, dropped, out, 3);
    expect(end).toBe(out.length);
    expect(roundedBits(ring, dropped)).toBe(params.modulusBits - dropped);
    const { poly: back, next } = unpackRounded(ring, out, 3, dropped);
    expect(next).toBe(end);
    expect(back).toEqual(poly);
  });

  it('sends only the used coefficients of a last, partly filled ciphertext, and the sum still decrypts there', () => {
    const dropped = params.droppedBits.c0;
    const poly = roundLowBits(ring, sampleUniform(ring, stream), dropped);
    const count = 1000;
    const out = new Uint8Array(roundedBytes(ring, dropped, count));
    expect(out.length).toBe(Math.ceil((count * (params.modulusBits - dropped)) / 8));
    expect(packRounded(ring, poly, dropped, out, 0, count)).toBe(out.length);
    const back = unpackRounded(ring, out, 0, dropped, count).poly;
    const [sent, read] = [ring.toCenteredBigInts(poly), ring.toCenteredBigInts(back)];
    expect(read.slice(0, count)).toEqual(sent.slice(0, count));
    expect(read.slice(count).every((v) => v === 0n)).toBe(true);
    expect(() => packRounded(ring, poly, dropped, out, 0, ring.n + 1)).toThrow(/count must be/);
  });

  it('refuses to pack a polynomial too wide for a float64 to hold exactly', () => {
    expect(() => roundedBits(ring, 0)).toThrow(/more than a float64 holds/);
  });

  it('sends residues at their primes\' bit lengths (q\'s bit length in all), and refuses a residue out of range', () => {
    const poly = sampleUniform(ring, stream);
    const out = new Uint8Array(residueBytes(ring));
    expect(out.length).toBe(Math.ceil((ring.n * params.modulusBits) / 8));
    packResidues(ring, poly, out, 0);
    expect(unpackResidues(ring, out, 0).poly).toEqual(poly);
    // All ones in the first residue's bits: above its prime.
    const bad = out.slice();
    bad[0] = 0xff;
    bad[1] = 0xff;
    bad[2] = 0xff;
    bad[3] |= 0x03;
    expect(() => unpackResidues(ring, bad, 0)).toThrow(/not below .*corrupt/);
  });
});
