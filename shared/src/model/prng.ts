/**
 * Seeded pseudo-random generator shared by weight initialisation and training-data shuffling.
 *
 * mulberry32 uses only 32-bit integer arithmetic (Math.imul, shifts), so the stream is bit-identical on every
 * JavaScript engine and CPU; Math.random cannot be seeded and must never be used where reproducibility matters.
 */
export interface Prng {
  /** Next value as an unsigned 32-bit integer. */
  nextUint32(): number;
  /** Next value uniformly distributed in [0, 1), with 32 bits of resolution. */
  nextFloat(): number;
}

const UINT32_RANGE = 0x1_0000_0000;

export function createPrng(seed: number): Prng {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    throw new RangeError(`PRNG seed must be an unsigned 32-bit integer, got ${seed}`);
  }
  let state = seed >>> 0;
  const nextUint32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return {
    nextUint32,
    nextFloat: () => nextUint32() / UINT32_RANGE,
  };
}

/**
 * Derives an independent stream seed from a base seed and a stream index, so that e.g. each parameter tensor gets
 * its own stream and inserting a tensor does not shift the values of the others.
 */
export function deriveSeed(seed: number, stream: number): number {
  // splitmix32-style finaliser: well mixed even for adjacent seeds/streams.
  let z = (seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}
