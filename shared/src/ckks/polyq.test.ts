import { describe, expect, it } from 'vitest';
import { allAtMost, Modulus, packBits, packedBytes, unpackBits } from './polyq.js';

// SEAL's 54-bit prime for N = 2048 (CoeffModulus.Create(2048, [54])).
const Q = 18014398509404161n;

function toWords(values: bigint[]): Uint32Array {
  const out = new Uint32Array(values.length * 2);
  values.forEach((v, i) => {
    out[2 * i] = Number(v & 0xffff_ffffn);
    out[2 * i + 1] = Number(v >> 32n);
  });
  return out;
}

function fromWords(words: Uint32Array): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < words.length; i += 2) out.push(BigInt(words[i] as number) + (BigInt(words[i + 1] as number) << 32n));
  return out;
}

/** Deterministic pseudo-random residues, including the edges that break carries. */
function residues(count: number, below: bigint): bigint[] {
  const out = [0n, 1n, below - 1n, below / 2n, (1n << 32n) - 1n, 1n << 32n].filter((v) => v < below);
  let x = 0x9e3779b97f4a7c15n;
  while (out.length < count) {
    x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    out.push(x % below);
  }
  return out;
}

const centered = (v: bigint): bigint => (v > (Q - 1n) / 2n ? v - Q : v);

describe('coefficient arithmetic modulo q', () => {
  const modulus = new Modulus(Q);

  it('packs and unpacks words at every width from 1 to 60 bits', () => {
    for (let bits = 1; bits <= 60; bits++) {
      const values = residues(67, 1n << BigInt(bits));
      const words = toWords(values);
      const out = new Uint8Array(packedBytes(values.length, bits) + 3);
      const end = packBits(words, bits, out, 3);
      expect(end).toBe(out.length);
      const back = new Uint32Array(words.length);
      expect(unpackBits(out, 3, bits, back)).toBe(end);
      expect(fromWords(back)).toEqual(values);
    }
  });

  it('adds modulo q like BigInt does', () => {
    const a = residues(500, Q);
    const b = residues(503, Q).slice(3).reverse();
    const acc = toWords(a);
    modulus.addInto(acc, toWords(b));
    expect(fromWords(acc)).toEqual(a.map((v, i) => (v + (b[i] as bigint)) % Q));
  });

  it('encodes scaled values as residues and decodes them back exactly', () => {
    const values = Float64Array.from([0, 1, -1, 10_000, -10_000, 1e-9, -0.123456789, 2 ** -29, -(2 ** 22)]);
    const words = new Uint32Array(values.length * 2);
    modulus.encodeScaled(values, 0, values.length, 2 ** 29, words);
    expect(fromWords(words).map(centered)).toEqual(Array.from(values, (v) => BigInt(Math.round(v * 2 ** 29))));
    const back = new Float64Array(values.length);
    modulus.decodeCentered(words, values.length, 2 ** 29, back, 0);
    values.forEach((v, i) => expect(Math.abs((back[i] as number) - v)).toBeLessThanOrEqual(2 ** -30));
  });

  it('compresses c0 with an error of at most 2^(dropped-1) modulo q, within the advertised width', () => {
    for (const dropped of [1, 7, 8, 12]) {
      const values = residues(2000, Q);
      const words = toWords(values);
      modulus.compress(words, dropped);
      const max = modulus.compressedMax(dropped);
      expect(allAtMost(words, max)).toBe(true);
      expect(fromWords(words).some((y) => y === max || y === 0n)).toBe(true);
      modulus.decompress(words, dropped);
      const back = fromWords(words);
      back.forEach((v, i) => {
        expect(v < Q).toBe(true);
        const err = centered((v - (values[i] as bigint) + Q) % Q);
        expect(err <= 1n << BigInt(dropped - 1) && err >= -(1n << BigInt(dropped - 1))).toBe(true);
      });
    }
  });

  it('spots residues that are not reduced', () => {
    expect(modulus.allReduced(toWords([0n, Q - 1n]))).toBe(true);
    expect(modulus.allReduced(toWords([0n, Q]))).toBe(false);
    expect(allAtMost(toWords([5n, 7n]), 6n)).toBe(false);
  });
});
