import { createPrng, deriveSeed } from './prng.js';
import { describeParameters, elementCount } from './registry.js';
import type { ModelSpec } from './spec.js';

/**
 * Deterministic initial weights: glorot-uniform kernels and zero biases, laid out as described by
 * `describeParameters`. Each tensor draws from its own PRNG stream (seed derived from `spec.seed` and the tensor's
 * index), and only integer PRNG steps, multiplication and Math.sqrt (correctly rounded per IEEE 754) are involved,
 * so the same spec gives bit-identical weights on every machine.
 */
export function initialWeights(spec: ModelSpec): Float32Array {
  const params = describeParameters(spec);
  const out = new Float32Array(params.reduce((sum, p) => sum + elementCount(p.shape), 0));
  let offset = 0;
  params.forEach((param, index) => {
    const size = elementCount(param.shape);
    if (param.init === 'glorot-uniform') {
      const { fanIn, fanOut } = fans(param.shape);
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      const prng = createPrng(deriveSeed(spec.seed, index));
      for (let i = 0; i < size; i++) out[offset + i] = (2 * prng.nextFloat() - 1) * limit;
    }
    // 'zeros' needs nothing: the array starts zero-filled.
    offset += size;
  });
  return out;
}

/** Keras convention: for conv kernels [kh, kw, in, out] the receptive field multiplies both fans. */
function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new Error(`glorot-uniform needs a kernel of rank >= 2, got shape [${shape.join(', ')}]`);
  const receptiveField = elementCount(shape.slice(0, -2));
  return { fanIn: shape[shape.length - 2]! * receptiveField, fanOut: shape[shape.length - 1]! * receptiveField };
}
