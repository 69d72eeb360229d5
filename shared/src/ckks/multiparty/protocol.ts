import { STUDY_ID } from '../../study/definition.js';
import { primesFor, type MultipartyParameters } from './params.js';
import {
  centeredBinomialWords,
  RnsRing,
  sampleCenteredBinomial,
  sampleTernary,
  sampleUniform,
  sampleWide,
  SeededStream,
  wideNoiseWords,
} from './ring.js';

/**
 * The arithmetic of multiparty CKKS (see ../PARAMETERS.md, "Multiparty"), one ciphertext of N values at a time,
 * without the wire: key shares over a common polynomial, the collective public key, encryption under it, the sum,
 * key-switching shares with smudging noise, and decryption under the sites' model key. Polynomials are RNS,
 * coefficient form, as `RnsRing` holds them. Who may call what (a share only for a sum of enough certified sites,
 * never two shares for one ciphertext) is for the callers; this only computes.
 */

export interface Ciphertext {
  c0: Uint32Array;
  c1: Uint32Array;
}

/** The ring of a parameter set: its primes found once. */
export function ringOf(params: MultipartyParameters): RnsRing {
  return RnsRing.create(params.ringDegree, primesFor(params.ringDegree, params.primeBits));
}

/**
 * The common polynomial a of a study's key epoch, from the consortium's public seed: every party expands the same,
 * and each study's epochs get their own a, so no two collective keys share one.
 */
export function commonPolynomial(ring: RnsRing, seed: Uint8Array, scope: { studyId: string; epoch: number }): Uint32Array {
  // The label must name one (study, epoch) only: a "/" in the id or a fractional epoch could collide with another's.
  if (!STUDY_ID.test(scope.studyId)) throw new RangeError(`"${scope.studyId.slice(0, 80)}" is not a study id`);
  if (!Number.isSafeInteger(scope.epoch) || scope.epoch < 1) throw new RangeError(`epoch must be a positive integer, got ${scope.epoch}`);
  return sampleUniform(ring, new SeededStream(seed, `federa/multiparty/common-a/study-${scope.studyId}/epoch-${scope.epoch}`));
}

/** A site's secret share s_i (ternary; it never leaves the site) and its public share p_i = -a s_i + e_i. */
export function keyShare(ring: RnsRing, a: Uint32Array, random: SeededStream): { secret: Uint32Array; publicShare: Uint32Array } {
  const secret = sampleTernary(ring, random);
  const e = sampleCenteredBinomial(ring, random);
  const publicShare = ring.sub(e, ring.multiply(a, secret));
  return { secret, publicShare };
}

/** p = sum p_i: the collective public key every site checks against the signed shares. */
export function collectivePublicKey(ring: RnsRing, shares: readonly Uint32Array[]): Uint32Array {
  if (shares.length === 0) throw new RangeError('a collective key needs at least one share');
  const sum = ring.zero();
  for (const share of shares) ring.add(sum, share, sum);
  return sum;
}

/** Rounds every coefficient to a multiple of 2^bits (centred): what travels drops those low bits. */
export function roundLowBits(ring: RnsRing, poly: Uint32Array, bits: number): Uint32Array {
  if (bits === 0) return poly.slice();
  if (ring.modulus.toString(2).length - bits <= 52) return roundLowBitsFloat(ring, poly, bits);
  const step = 1n << BigInt(bits);
  const half = step >> 1n;
  const values = ring.toCenteredBigInts(poly).map((v) => {
    const r = ((v % step) + step) % step;
    return r >= half ? v - r + step : v - r;
  });
  return ring.fromBigInts(values);
}

/**
 * The same without BigInt when the quotients k = value / 2^bits fit a float64: the float CRT is off by far less
 * than half a step (2^-50 relative), so k is the nearest multiple, or at worst its neighbour at an exact tie.
 */
function roundLowBitsFloat(ring: RnsRing, poly: Uint32Array, bits: number): Uint32Array {
  const centred = ring.toCenteredNumbers(poly);
  const step = 2 ** bits;
  const quotients = new Float64Array(ring.n);
  for (let i = 0; i < ring.n; i++) quotients[i] = Math.round((centred[i] as number) / step);
  // k * 2^bits in RNS: the shift as scalar multiplications of at most 2^21 each.
  const out = ring.fromSigned(quotients);
  for (let left = bits; left > 0; left -= 21) ring.mulScalar(out, 2 ** Math.min(21, left), out);
  return out;
}

/**
 * m = round(Delta v) as RNS residues. Delta = 2^scaleBits is above 2^53, so v is rounded at the finest scale a float64
 * holds exactly for |v| <= maxAbsValue, then shifted in RNS: the rounding is then 2^(scaleBits - fine - 1) instead
 * of 1/2 (2^41 at the defaults, against a total error bound near 2^61).
 */
export function encodeValues(ring: RnsRing, params: MultipartyParameters, values: ArrayLike<number>): Uint32Array {
  if (values.length > ring.n) throw new RangeError(`one ciphertext holds ${ring.n} values, got ${values.length}`);
  const limit = params.request.maxAbsValue;
  const fine = Math.min(params.scaleBits, 52 - Math.ceil(Math.log2(limit + 1)));
  const scaled = new Float64Array(ring.n);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!Number.isFinite(v) || Math.abs(v) > limit) throw new RangeError(`value ${i} is ${v}, outside +-${limit}`);
    scaled[i] = Math.round(v * 2 ** fine);
  }
  const m = ring.fromSigned(scaled);
  for (let left = params.scaleBits - fine; left > 0; left -= 21) ring.mulScalar(m, 2 ** Math.min(21, left), m);
  return m;
}

/** Site j's update under the collective key: (p u + e0 + m, a u + e1), c0 and c1 rounded as the parameters allow. */
export function encrypt(ring: RnsRing, params: MultipartyParameters, key: { p: Uint32Array; a: Uint32Array }, values: ArrayLike<number>, random: SeededStream): Ciphertext {
  const m = encodeValues(ring, params, values);
  const u = sampleTernary(ring, random);
  const e0 = sampleCenteredBinomial(ring, random);
  const e1 = sampleCenteredBinomial(ring, random);
  const c0 = ring.add(ring.add(ring.multiply(key.p, u), e0), m);
  const c1 = ring.add(ring.multiply(key.a, u), e1);
  // c1 travels whole (see PARAMETERS.md): rounding it would be key-dependent noise.
  return { c0: roundLowBits(ring, c0, params.droppedBits.c0), c1 };
}

/**
 * Moves `random` past what one encrypt() draws (u, e0, e1 in that order) without encrypting: where the next
 * ciphertext's randomness starts, so threads can encrypt a vector's ciphertexts exactly as one thread would.
 */
export function skipEncryptionRandomness(ring: RnsRing, random: SeededStream): void {
  // u is rejection-sampled, so how far it reads depends on the bytes; the two noises read a fixed count.
  sampleTernary(ring, random);
  random.skip(2 * 4 * centeredBinomialWords(ring.n));
}

/** The coordinator's only operation: adding ciphertexts it cannot read. */
export function addCiphertexts(ring: RnsRing, ciphertexts: readonly Ciphertext[]): Ciphertext {
  const sum = { c0: ring.zero(), c1: ring.zero() };
  for (const c of ciphertexts) {
    ring.add(sum.c0, c.c0, sum.c0);
    ring.add(sum.c1, c.c1, sum.c1);
  }
  return sum;
}

/**
 * Site i's key-switching share for the summed C1: h_i = (s_i - t_i) C1 + E_i, where t_i is this site's part of the
 * model key (the model key itself for the one designated site, none for the others) and E_i smudging noise.
 */
export function keySwitchShare(
  ring: RnsRing,
  params: MultipartyParameters,
  secret: Uint32Array,
  modelKeyPart: Uint32Array | null,
  c1: Uint32Array,
  random: SeededStream,
): Uint32Array {
  const switching = modelKeyPart ? ring.sub(secret, modelKeyPart) : secret;
  const smudging = sampleWide(ring, random, 2 ** params.smudgingLog2);
  return roundLowBits(ring, ring.add(ring.multiply(switching, c1), smudging), params.droppedBits.share);
}

/** Moves `random` past what one keySwitchShare() draws (its smudging noise). */
export function skipSmudgingRandomness(ring: RnsRing, params: MultipartyParameters, random: SeededStream): void {
  random.skip(4 * wideNoiseWords(ring.n, 2 ** params.smudgingLog2));
}

/** C0' = C0 + sum h_i: the sum now decrypts under the model key, which the coordinator does not hold. */
export function applyKeySwitch(ring: RnsRing, sum: Ciphertext, shares: readonly Uint32Array[]): Ciphertext {
  const c0 = sum.c0.slice();
  for (const h of shares) ring.add(c0, h, c0);
  return { c0, c1: sum.c1 };
}

/** Decrypts with a key (the model key after the switch): values = (C0 + C1 s) / Delta. */
export function decrypt(ring: RnsRing, params: MultipartyParameters, ciphertext: Ciphertext, key: Uint32Array, count = ring.n): Float64Array {
  const plain = ring.add(ciphertext.c0, ring.multiply(ciphertext.c1, key));
  const centred = ring.toCenteredNumbers(plain);
  const scale = 2 ** params.scaleBits;
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = (centred[i] as number) / scale;
  return out;
}
