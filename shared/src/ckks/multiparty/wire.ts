import { packBits, packedBytes, unpackBits } from '../polyq.js';
import type { RnsRing } from './ring.js';

/**
 * How a multiparty polynomial travels. Two forms:
 * - rounded (c0, key-switching shares): its coefficients are multiples of 2^dropped (see `roundLowBits`), so only
 *   k = value / 2^dropped goes, offset to unsigned, at (modulusBits - dropped) bits. |k| < q / 2^(dropped+1) stays
 *   below 2^53 for every derived parameter set, so k is exact in a float64 and nothing here needs BigInt.
 * - residues (c1, sums): each residue at its prime's bit length; the sum of those lengths is q's bit length, so
 *   this costs nothing over a packed integer and needs no CRT.
 */

/** Bits per coefficient of a rounded polynomial. */
export function roundedBits(ring: RnsRing, dropped: number): number {
  const bits = ring.modulus.toString(2).length - dropped;
  if (bits > 53) throw new RangeError(`a polynomial rounded to 2^${dropped} still needs ${bits} bits per coefficient: more than a float64 holds exactly`);
  return bits;
}

/** Bytes of a rounded polynomial's first `count` coefficients (a model's last ciphertext uses only some). */
export function roundedBytes(ring: RnsRing, dropped: number, count = ring.n): number {
  return packedBytes(count, roundedBits(ring, dropped));
}

export function residueBytes(ring: RnsRing): number {
  return ring.primes.reduce((sum, p) => sum + packedBytes(ring.n, bitLength(p)), 0);
}

const bitLength = (p: number): number => Math.ceil(Math.log2(p + 1));
const TWO_32 = 0x1_0000_0000;

/**
 * Packs the first `count` coefficients of a polynomial whose coefficients are multiples of 2^dropped. Only c0 and the
 * shares are ever cut short: value i of a sum depends on c0[i] and the shares' [i] alone (c1 multiplies the key, so
 * it always travels whole), so a model's last, partly used ciphertext sends only the values it holds.
 */
export function packRounded(ring: RnsRing, poly: Uint32Array, dropped: number, out: Uint8Array, at: number, count = ring.n): number {
  if (!Number.isInteger(count) || count < 1 || count > ring.n) throw new RangeError(`count must be 1..${ring.n}, got ${count}`);
  const bits = roundedBits(ring, dropped);
  const offset = 2 ** (bits - 1);
  const step = 2 ** dropped;
  const centred = ring.toCenteredNumbers(poly);
  const words = new Uint32Array(2 * count);
  for (let i = 0; i < count; i++) {
    // toCenteredNumbers is within 2^-50 relative: far below half a step, so the quotient rounds to the exact k.
    const k = Math.round((centred[i] as number) / step);
    const u = k + offset;
    if (u < 0 || u >= 2 * offset) throw new RangeError(`coefficient ${i} is out of range for ${bits} bits`);
    const hi = Math.floor(u / TWO_32);
    words[2 * i] = u - hi * TWO_32;
    words[2 * i + 1] = hi;
  }
  return packBits(words, bits, out, at);
}

/** Inverse of packRounded; coefficients past `count` are zero. */
export function unpackRounded(ring: RnsRing, input: Uint8Array, at: number, dropped: number, count = ring.n): { poly: Uint32Array; next: number } {
  if (!Number.isInteger(count) || count < 1 || count > ring.n) throw new RangeError(`count must be 1..${ring.n}, got ${count}`);
  const bits = roundedBits(ring, dropped);
  const words = new Uint32Array(2 * count);
  const next = unpackBits(input, at, bits, words);
  const offset = 2 ** (bits - 1);
  // k < 2^52 is exact in a float64: residues of k, then k * 2^dropped as scalar multiplications of at most 2^21
  // each, without BigInt (what every key-switching share and update's c0 goes through).
  const quotients = new Float64Array(ring.n);
  for (let i = 0; i < count; i++) quotients[i] = (words[2 * i + 1] as number) * TWO_32 + (words[2 * i] as number) - offset;
  const poly = ring.fromSigned(quotients);
  for (let left = dropped; left > 0; left -= 21) ring.mulScalar(poly, 2 ** Math.min(21, left), poly);
  return { poly, next };
}

export function packResidues(ring: RnsRing, poly: Uint32Array, out: Uint8Array, at: number): number {
  let pos = at;
  const words = new Uint32Array(2 * ring.n);
  ring.primes.forEach((p, j) => {
    for (let i = 0; i < ring.n; i++) words[2 * i] = poly[j * ring.n + i] as number;
    pos = packBits(words, bitLength(p), out, pos);
  });
  return pos;
}

export function unpackResidues(ring: RnsRing, input: Uint8Array, at: number): { poly: Uint32Array; next: number } {
  const poly = ring.zero();
  const words = new Uint32Array(2 * ring.n);
  let pos = at;
  ring.primes.forEach((p, j) => {
    pos = unpackBits(input, pos, bitLength(p), words);
    for (let i = 0; i < ring.n; i++) {
      const r = words[2 * i] as number;
      if (r >= p) throw new RangeError(`residue ${i} of prime ${j} is ${r}, not below ${p}: corrupt polynomial`);
      poly[j * ring.n + i] = r;
    }
  });
  return { poly, next: pos };
}
