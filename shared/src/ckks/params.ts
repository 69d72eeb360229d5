import { createHash } from 'node:crypto';
import { CkksError } from './errors.js';

/**
 * What a consortium's CKKS key set is sized for. See PARAMETERS.md for why these defaults and the
 * derivation of the error bound.
 */
export interface CkksParameters {
  /** Ring dimension N. Values are packed one per polynomial coefficient, so N values per ciphertext. */
  readonly polyModulusDegree: number;
  /** Bit size of the single prime q (SEAL's CoeffModulus.Create picks the largest such NTT prime). */
  readonly coeffModulusBits: number;
  /** Fixed-point scale: a value v is encoded as round(v * 2^scaleBits). */
  readonly scaleBits: number;
  /** Low bits of each uploaded c0 coefficient that are not sent (rounding them away adds bounded noise). */
  readonly droppedBits: number;
  /** Largest |value| a site may encrypt; larger values are refused because the sum could wrap modulo q. */
  readonly maxAbsValue: number;
  /** Largest number of site updates one sum may hold. */
  readonly maxSites: number;
}

/**
 * N = 2048 with one 54-bit prime (the 128-bit bound for N = 2048), values up to 1e4 (|update| <= 1 times a
 * weight of up to 1e4 samples) from up to 1,000 sites: 46 bits per uploaded value, FedAvg error <= 5.6e-7.
 */
export const DEFAULT_CKKS_PARAMETERS: CkksParameters = Object.freeze({
  polyModulusDegree: 2048,
  coeffModulusBits: 54,
  scaleBits: 29,
  droppedBits: 8,
  maxAbsValue: 10_000,
  maxSites: 1000,
});

/**
 * Largest |coefficient| of SEAL's fresh encryption noise: SEAL 4.1 samples a centered binomial distribution
 * (sum of 21 coin differences, so |e| <= 21; its clipped-Gaussian alternative stops at 19.2).
 */
export const FRESH_NOISE_MAX = 21;

/** Rounding v * 2^scaleBits to an integer moves it by at most one half. */
export const ENCODE_ROUNDING_MAX = 0.5;

/** Largest integer error one site's ciphertext can add to any coefficient of the decrypted sum. */
export function perSiteCoefficientErrorMax(params: CkksParameters): number {
  const compression = params.droppedBits > 0 ? 2 ** (params.droppedBits - 1) : 0;
  return FRESH_NOISE_MAX + ENCODE_ROUNDING_MAX + compression;
}

/** Worst-case absolute error of each value of the decrypted sum of `sites` updates (deterministic bound). */
export function sumErrorBound(params: CkksParameters, sites: number): number {
  return (sites * perSiteCoefficientErrorMax(params)) / 2 ** params.scaleBits;
}

/**
 * Worst-case absolute error of FedAvg computed from the decrypted sum (sum[i] / sum[last]) against FedAvg of
 * the same vectors in float64, when every site's |update| <= maxAbsUpdate and the weights add up to
 * totalWeight. From |a/b - (a+da)/(b+db)| <= (|da| + |a/b| |db|) / (b - |db|).
 */
export function fedAvgErrorBound(
  params: CkksParameters,
  bounds: { sites: number; totalWeight: number; maxAbsUpdate?: number },
): number {
  const delta = sumErrorBound(params, bounds.sites);
  const denominator = bounds.totalWeight - delta;
  if (!(denominator > 0)) return Number.POSITIVE_INFINITY;
  return ((1 + (bounds.maxAbsUpdate ?? 1)) * delta) / denominator;
}

/**
 * Largest possible |coefficient| of a sum of maxSites updates, before reduction modulo q. Decryption is exact
 * only while this stays below q/2 (a centered coefficient must not wrap around).
 */
export function maxSumCoefficient(params: CkksParameters): number {
  return params.maxSites * (params.maxAbsValue * 2 ** params.scaleBits + perSiteCoefficientErrorMax(params));
}

const isInt = (v: number, lo: number, hi: number): boolean => Number.isInteger(v) && v >= lo && v <= hi;

/** Checks everything that does not need SEAL; the context re-checks the bound against the actual prime. */
export function checkParameters(params: CkksParameters): void {
  const bad = (why: string): never => {
    throw new CkksError('INVALID_PARAMETERS', `invalid CKKS parameters: ${why}`);
  };
  const n = params.polyModulusDegree;
  if (!isInt(n, 1024, 32768) || (n & (n - 1)) !== 0) bad(`polyModulusDegree must be a power of two in [1024, 32768], got ${n}`);
  // SEAL accepts primes of at most 60 bits; below 20 bits nothing useful fits.
  if (!isInt(params.coeffModulusBits, 20, 60)) bad(`coeffModulusBits must be an integer in [20, 60], got ${params.coeffModulusBits}`);
  if (!isInt(params.scaleBits, 1, 52)) bad(`scaleBits must be an integer in [1, 52], got ${params.scaleBits}`);
  if (!isInt(params.droppedBits, 0, 24)) bad(`droppedBits must be an integer in [0, 24], got ${params.droppedBits}`);
  if (params.droppedBits >= params.coeffModulusBits - 8) bad(`droppedBits (${params.droppedBits}) leaves too few bits of q`);
  if (!(Number.isFinite(params.maxAbsValue) && params.maxAbsValue > 0)) bad(`maxAbsValue must be a positive number, got ${params.maxAbsValue}`);
  if (!isInt(params.maxSites, 1, 1_000_000)) bad(`maxSites must be an integer in [1, 1000000], got ${params.maxSites}`);
  // Encoded values must be exact integers in float64.
  if (params.maxAbsValue * 2 ** params.scaleBits >= 2 ** 52) bad(`maxAbsValue * 2^scaleBits must stay below 2^52`);
  // q < 2^bits, so a sum that needs more than 2^(bits-1) can never fit; the context checks the actual prime.
  assertSumFits(params, 2 ** params.coeffModulusBits);
}

/** Refuses parameters whose largest possible sum would wrap around modulo q (q given as a number). */
export function assertSumFits(params: CkksParameters, q: number): void {
  const needed = maxSumCoefficient(params);
  if (needed >= (q - 1) / 2) {
    throw new CkksError(
      'INVALID_PARAMETERS',
      `invalid CKKS parameters: a sum of ${params.maxSites} values of up to ${params.maxAbsValue} at scale ` +
        `2^${params.scaleBits} needs coefficients up to ${needed.toExponential(3)}, beyond q/2 = ${((q - 1) / 2).toExponential(3)} ` +
        `(${params.coeffModulusBits}-bit q): lower scaleBits, maxAbsValue or maxSites`,
    );
  }
}

/** Canonical text of the parameters; its SHA-256 identifies them on the wire. */
export function canonicalParameters(params: CkksParameters): string {
  return [
    'federa-ckks/v1',
    'encoding=coefficient',
    `N=${params.polyModulusDegree}`,
    `q-bits=${params.coeffModulusBits}`,
    `scale-bits=${params.scaleBits}`,
    `dropped-bits=${params.droppedBits}`,
    `max-abs-value=${params.maxAbsValue}`,
    `max-sites=${params.maxSites}`,
  ].join(';');
}

/** Hex SHA-256 of the canonical parameters: payloads, keys and public parameters all carry it. */
export function parametersFingerprint(params: CkksParameters): string {
  return createHash('sha256').update(canonicalParameters(params)).digest('hex');
}
