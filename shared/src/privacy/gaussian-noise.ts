/**
 * Noise for differential privacy, drawn only from the OS CSPRNG. Never Math.random and never a seed:
 * noise that can be regenerated can be subtracted, and the privacy guarantee is gone.
 */
import { randomFillSync } from 'node:crypto';

/** Values per block, so a 10M-parameter update never holds 10M doubles (or 20M uint32s) of scratch at once. */
const CHUNK = 65_536;
const TWO_POW_26 = 67_108_864;
const TWO_POW_53 = 9_007_199_254_740_992;

function checkCount(count: number): void {
  if (!(Number.isSafeInteger(count) && count >= 0)) {
    throw new RangeError(`count must be a non-negative integer, got ${count}`);
  }
}

function checkStdDev(stdDev: number): void {
  if (!(stdDev >= 0 && Number.isFinite(stdDev))) {
    throw new RangeError(`stdDev must be a finite number >= 0, got ${stdDev}`);
  }
}

/** 53-bit uniform from two uint32s (27 + 26 high bits), as V8 and numpy build doubles; 0 is never returned. */
function toUniform(hi: number, lo: number): number {
  const k = (hi >>> 5) * TWO_POW_26 + (lo >>> 6);
  if (k !== 0) return k / TWO_POW_53;
  // Probability 2^-53; redrawing keeps the result in (0, 1) so log() in Box–Muller stays finite.
  const fresh = randomFillSync(new Uint32Array(2));
  return toUniform(fresh[0] as number, fresh[1] as number);
}

/** Fills out[0..n) with uniforms in (0, 1), reusing `bits` (length >= 2n) as the random-word buffer. */
function fillUniform(out: Float64Array, n: number, bits: Uint32Array): void {
  randomFillSync(bits, 0, 2 * n);
  for (let i = 0; i < n; i++) out[i] = toUniform(bits[2 * i] as number, bits[2 * i + 1] as number);
}

/** Fills out[0..n) with N(0, stdDev^2) draws by Box–Muller, using both outputs of each pair. */
function fillGaussian(out: Float64Array, n: number, stdDev: number, bits: Uint32Array): void {
  const pairs = Math.ceil(n / 2);
  randomFillSync(bits, 0, 4 * pairs);
  for (let p = 0; p < pairs; p++) {
    const u1 = toUniform(bits[4 * p] as number, bits[4 * p + 1] as number);
    const u2 = toUniform(bits[4 * p + 2] as number, bits[4 * p + 3] as number);
    const r = stdDev * Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    out[2 * p] = r * Math.cos(theta);
    if (2 * p + 1 < n) out[2 * p + 1] = r * Math.sin(theta);
  }
}

/** `count` uniforms in the open interval (0, 1), e.g. for Poisson sampling of clients or examples. */
export function secureUniform(count: number): Float64Array {
  checkCount(count);
  const out = new Float64Array(count);
  const bits = new Uint32Array(2 * Math.min(count, CHUNK));
  for (let start = 0; start < count; start += CHUNK) {
    const n = Math.min(CHUNK, count - start);
    fillUniform(out.subarray(start, start + n), n, bits);
  }
  return out;
}

/** `count` independent draws from N(0, stdDev^2). */
export function secureGaussian(count: number, stdDev: number): Float64Array {
  checkCount(count);
  checkStdDev(stdDev);
  const out = new Float64Array(count);
  // CHUNK is even, so every block but the last uses whole Box–Muller pairs.
  const bits = new Uint32Array(4 * Math.ceil(Math.min(count, CHUNK) / 2));
  for (let start = 0; start < count; start += CHUNK) {
    const n = Math.min(CHUNK, count - start);
    fillGaussian(out.subarray(start, start + n), n, stdDev, bits);
  }
  return out;
}

/** Adds N(0, stdDev^2) noise to every value in place, in fixed-size blocks to bound scratch memory. */
export function addGaussianNoise(values: Float32Array, stdDev: number): void {
  checkStdDev(stdDev);
  const count = values.length;
  const block = new Float64Array(Math.min(count, CHUNK));
  const bits = new Uint32Array(4 * Math.ceil(block.length / 2));
  for (let start = 0; start < count; start += CHUNK) {
    const n = Math.min(CHUNK, count - start);
    fillGaussian(block, n, stdDev, bits);
    for (let i = 0; i < n; i++) values[start + i] = (values[start + i] as number) + (block[i] as number);
  }
}
