import { nttPrimes } from './ring.js';

/**
 * Parameters of multiparty CKKS, derived from what a consortium asks for rather than chosen by hand: the ring,
 * the modulus, the scale, how many low bits each transmitted polynomial may drop, and the smudging noise of a
 * key-switching share. The derivation is written out in ../PARAMETERS.md ("Multiparty"); this file is that text as
 * code, so a consortium with other bounds gets parameters with the same guarantees, or a clear refusal.
 *
 * Protocol the bounds are for (coefficient encoding, as the single-key codec):
 * - key shares: site i samples a ternary s_i and sends p_i = -a s_i + e_i over the common a; p = sum p_i, s = sum s_i.
 * - encryption by site j: c0 = p u + e0 + round(Delta v), c1 = a u + e1 (u ternary); c0 rounded to a multiple of
 *   2^d0 before it travels, c1 whole (d1 = 0, see below).
 * - the coordinator adds the K ciphertexts: (C0, C1).
 * - key switch to the model key s_m that only sites hold: site i sends h_i = (s_i - t_i) C1 + E_i, E_i wide
 *   "smudging" noise, rounded to 2^dh, with sum t_i = s_m; then C0 + sum h_i + C1 s_m = sum m + noise; the model is
 *   published with C0' = C0 + sum h_i rounded like c0.
 */

/** SEAL's centered binomial noise (21 coin differences): variance 10.5, |e| <= 21. */
const NOISE_VARIANCE = 10.5;
/** A ternary polynomial's coefficients are -1, 0, 1 with probability 1/3 each: variance 2/3. */
const TERNARY_VARIANCE = 2 / 3;
/** 128-bit classical security for a ternary secret (HomomorphicEncryption.org standard, 2018), max log2 q by N. */
export const MAX_MODULUS_BITS_128: Readonly<Record<number, number>> = Object.freeze({ 2048: 54, 4096: 109, 8192: 218, 16384: 438 });
/** Largest RNS prime the ring arithmetic takes (products of two residues stay exact in split multiplication). */
export const MAX_PRIME_BITS = 30;

export interface MultipartyRequest {
  /** Most sites whose updates one aggregate holds (a consortium's size, with head room). */
  maxSites: number;
  /** Smallest cohort a round may have (the site policy's minParticipants can only raise it). */
  minSites: number;
  /** Largest |value| a site may encrypt: a weighted update, |update| <= 1 times a weight of at most 1e4. */
  maxAbsValue: number;
  /** Largest error of a decrypted FedAvg value against plaintext FedAvg of the same updates. */
  accuracy: number;
  /** The smudging noise hides the aggregate's key-dependent noise up to statistical distance 2^-lambda. */
  statisticalSecurity: number;
  /** Ring degree; the smallest that fits is chosen when absent. */
  ringDegree?: number;
}

export const DEFAULT_MULTIPARTY_REQUEST: Readonly<MultipartyRequest> = Object.freeze({
  maxSites: 100,
  minSites: 2,
  maxAbsValue: 1e4,
  accuracy: 1e-6,
  statisticalSecurity: 40,
});

export interface MultipartyParameters {
  request: MultipartyRequest;
  ringDegree: number;
  /** RNS: NTT-friendly primes of these bit lengths (largest first); q is their product. */
  primeBits: number[];
  modulusBits: number;
  /** Delta = 2^scaleBits. */
  scaleBits: number;
  /** Low bits dropped (rounded away) from c0, c1 and a key-switching share before they travel. */
  droppedBits: { c0: number; c1: number; share: number };
  /** Standard deviation of each site's smudging noise E_i, as log2. */
  smudgingLog2: number;
  /** High-probability bounds (each exceeded with probability below 2^-lambda per coefficient), as log2. */
  bounds: { ciphertextNoiseLog2: number; totalErrorLog2: number; largestSumLog2: number };
  /** Wire sizes per model parameter: what a site uploads per round (update and share) and downloads. */
  bytesPerParameter: { upload: number; download: number };
}

export class MultipartyParameterError extends Error {
  override readonly name = 'MultipartyParameterError';
}

const log2 = Math.log2;

/**
 * Bits a transmitted polynomial may drop: rounding to a multiple of 2^d adds an error uniform in [-2^(d-1), 2^(d-1)]
 * (variance 4^d / 12), so the largest d whose variance, times `copies`, stays within `variance`.
 */
function droppable(variance: number, copies: number): number {
  return Math.max(0, Math.floor(0.5 * log2((12 * variance) / copies)));
}

/** The fewest primes for a modulus of `bits` bits, their lengths as even as the bits allow (largest first). */
function splitModulus(bits: number): number[] {
  const count = Math.ceil(bits / MAX_PRIME_BITS);
  return Array.from({ length: count }, (_, i) => Math.floor(bits / count) + (i < bits % count ? 1 : 0));
}

const log2Product = (primes: readonly number[]): number => primes.reduce((sum, p) => sum + log2(p), 0);

const primeCache = new Map<string, number[]>();

/** The largest NTT-friendly primes of each length for ring degree n (distinct, in the order of `primeBits`). */
export function primesFor(n: number, primeBits: readonly number[]): number[] {
  const key = `${n}:${primeBits.join(',')}`;
  const cached = primeCache.get(key);
  if (cached) return cached;
  const chosen: number[] = [];
  for (const bits of primeBits) {
    // Primes of this length not already taken: ask for as many as have been taken plus one.
    const candidates = nttPrimes(n, bits, chosen.length + 1).filter((p) => !chosen.includes(p));
    const next = candidates[0];
    if (next === undefined || next < 2 ** (bits - 1)) throw new RangeError(`no ${bits}-bit NTT prime left for N = ${n}`);
    chosen.push(next);
  }
  primeCache.set(key, chosen);
  return chosen;
}

/** Derives the parameters, or says which request cannot be met and what to change. */
export function deriveMultipartyParameters(request: MultipartyRequest = DEFAULT_MULTIPARTY_REQUEST): MultipartyParameters {
  const { maxSites: kMax, minSites: kMin, maxAbsValue, accuracy, statisticalSecurity: lambda } = request;
  if (!Number.isInteger(kMax) || kMax < 2 || kMax > 10_000) throw new MultipartyParameterError(`maxSites must be an integer in 2..10000, got ${kMax}`);
  if (!Number.isInteger(kMin) || kMin < 1 || kMin > kMax) throw new MultipartyParameterError(`minSites must be an integer in 1..maxSites, got ${kMin}`);
  if (!(maxAbsValue > 0)) throw new MultipartyParameterError(`maxAbsValue must be positive, got ${maxAbsValue}`);
  if (!(accuracy > 0 && accuracy < 1)) throw new MultipartyParameterError(`accuracy must be in (0, 1), got ${accuracy}`);
  if (!Number.isInteger(lambda) || lambda < 20 || lambda > 80) throw new MultipartyParameterError(`statisticalSecurity must be an integer in 20..80 bits, got ${lambda}`);
  // A per-coefficient bound exceeded with probability below 2^-lambda: a sum of independent bounded terms is
  // subgaussian, P(|X| > t) <= 2 exp(-t^2 / 2V), so t = tail * sqrt(V).
  const tail = Math.sqrt(2 * (lambda + 1) * Math.LN2);
  const degrees = request.ringDegree ? [request.ringDegree] : [2048, 4096, 8192, 16384];
  const refusals: string[] = [];
  for (const n of degrees) {
    const maxBits = MAX_MODULUS_BITS_128[n];
    if (maxBits === undefined) throw new MultipartyParameterError(`ringDegree must be one of ${Object.keys(MAX_MODULUS_BITS_128).join(', ')}, got ${n}`);
    // Noise of the summed ciphertexts at the largest cohort (it grows with K^2: e u_j and e1_j s each carry a sum
    // over K sites, and there are K of them). e = sum e_i, s = sum s_i.
    const keyNoiseTimesSmall = NOISE_VARIANCE * kMax * n * TERNARY_VARIANCE; // variance of one coefficient of e*u_j or e1_j*s
    const base = kMax * (2 * keyNoiseTimesSmall + NOISE_VARIANCE);
    // c1 travels whole, as residues: rounding it (r1) would be multiplied by s in decryption, so it would be
    // key-dependent and need smudging too; at most 3 bits could go (r1's variance K n (2K/3) 4^d1 / 12 within
    // the rest), not worth a CRT per coefficient.
    const d1 = 0;
    const r1 = 0;
    const ciphertextNoise = tail * Math.sqrt(base + r1);
    // Each honest site's smudging alone must hide that noise up to 2^-lambda (the others may collude).
    const smudging = 2 ** lambda * ciphertextNoise;
    // c0's and the shares' roundings depend only on what the coordinator already holds, so they need no smudging:
    // let each add at most the smudging's variance, at the smallest cohort where the error weighs most.
    const smudgeVariance = kMin * smudging ** 2;
    const d0 = droppable(smudgeVariance, kMin);
    const dh = droppable(smudgeVariance, kMin);
    // Each update's c0 and each share rounded, and the published C0' = C0 + sum h_i rounded once more like c0.
    const roundings = (kMin * (4 ** d0 + 4 ** dh) + 4 ** d0) / 12;
    const totalError = tail * Math.sqrt(smudgeVariance + roundings + base + r1);
    // FedAvg divides by W >= K (every weight is at least 1): the error of a value is at most totalError / (Delta K).
    const scaleBits = Math.ceil(log2(totalError / (accuracy * kMin)));
    const largestSum = kMax * maxAbsValue * 2 ** scaleBits + tail * Math.sqrt(kMax * smudging ** 2 + (kMax * (4 ** d0 + 4 ** dh) + 4 ** d0) / 12 + base + r1);
    // Decryption reads residues centred in (-q/2, q/2]: q > 2 * largestSum. The primes of b bits sit just below 2^b,
    // so q is checked as the product of the primes actually chosen: a bit is added only where that falls short.
    let modulusBits = Math.ceil(log2(2 * largestSum));
    let primeBits = splitModulus(modulusBits);
    while (modulusBits <= maxBits && log2Product(primesFor(n, primeBits)) <= log2(2 * largestSum)) primeBits = splitModulus(++modulusBits);
    if (modulusBits > maxBits) {
      refusals.push(`N = ${n} needs a ${modulusBits}-bit modulus, above the ${maxBits} bits that keep 128-bit security`);
      continue;
    }
    const qBits = modulusBits;
    const sent = (dropped: number): number => (qBits - dropped) / 8;
    return {
      request: { ...request },
      ringDegree: n,
      primeBits,
      modulusBits: qBits,
      scaleBits,
      droppedBits: { c0: d0, c1: d1, share: dh },
      smudgingLog2: log2(smudging),
      bounds: { ciphertextNoiseLog2: log2(ciphertextNoise), totalErrorLog2: log2(totalError), largestSumLog2: log2(largestSum) },
      // Upload: c0 and c1 of the update, and one key-switching share. Download: the summed C1 (to compute the
      // share; sums of rounded values are exact) and the published model, C0' rounded like c0 and C1 whole. A member
      // that checks the sum (verifySum) downloads the K updates' c1 parts instead of the summed C1.
      bytesPerParameter: { upload: sent(d0) + sent(d1) + sent(dh), download: qBits / 8 + sent(d0) + sent(d1) },
    };
  }
  throw new MultipartyParameterError(
    `no ring degree meets maxSites ${kMax}, minSites ${kMin}, accuracy ${accuracy} and ${lambda}-bit statistical security: ${refusals.join('; ')}; ` +
      'lower statisticalSecurity or maxSites, raise minSites, or relax accuracy',
  );
}
