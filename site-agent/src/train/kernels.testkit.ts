/**
 * Inputs for the wasm kernel tests: deterministic values from a seed (a linear congruential generator), so a
 * failing comparison with the cpu backend reproduces. `map` turns each uniform u in [0, 1) into the value stored;
 * by default 2u - 1, in [-1, 1).
 */
export function seededValues(count: number, seed: number, map: (u: number) => number = (u) => 2 * u - 1): Float32Array {
  const out = new Float32Array(count);
  let s = seed;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = map(s / 2 ** 32);
  }
  return out;
}

/** Elements of a tensor of this shape. */
export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
