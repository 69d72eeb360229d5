import { createPrng, deriveSeed } from './prng.js';
import { describeParameters, elementCount } from './registry.js';
import type { ModelSpec } from './spec.js';
import type { ParameterInit } from './types.js';

/** ln 99 written out, since Math.log's last bit may differ between engines: background logit over the others'. */
const BACKGROUND_PRIOR_LOGIT = 4.59511985013459;

/**
 * Deterministic initial weights, laid out as described by `describeParameters`: uniform kernels (glorot or he, as
 * each parameter says), zeros and a segmentation head's background prior. Each tensor draws from its own PRNG stream
 * (seed derived from `spec.seed` and the tensor's index), and only integer PRNG steps, division, multiplication and
 * Math.sqrt (all correctly rounded per IEEE 754) are involved, so the same spec gives bit-identical weights on every
 * machine. Normal distributions are avoided on purpose: sampling them needs Math.log/Math.cos, whose last bit may
 * differ between engines.
 */
export function initialWeights(spec: ModelSpec): Float32Array {
  const params = describeParameters(spec);
  const out = new Float32Array(params.reduce((sum, p) => sum + elementCount(p.shape), 0));
  let offset = 0;
  params.forEach((param, index) => {
    const size = elementCount(param.shape);
    const limit = uniformLimit(param.init, param.shape);
    if (param.init === 'background-prior') out[offset] = BACKGROUND_PRIOR_LOGIT;
    else if (limit !== undefined) {
      const prng = createPrng(deriveSeed(spec.seed, index));
      for (let i = 0; i < size; i++) out[offset + i] = (2 * prng.nextFloat() - 1) * limit;
    }
    // 'zeros' needs nothing: the array starts zero-filled.
    offset += size;
  });
  return out;
}

/** Half-width of the uniform distribution for `init`, or undefined for the constant kinds. */
function uniformLimit(init: ParameterInit, shape: readonly number[]): number | undefined {
  switch (init) {
    case 'zeros':
    case 'background-prior':
      return undefined;
    case 'glorot-uniform': {
      const { fanIn, fanOut } = fans(init, shape);
      return Math.sqrt(6 / (fanIn + fanOut));
    }
    case 'he-uniform':
      // Variance 2 / fanIn keeps activations from shrinking through ReLU layers when nothing renormalises them.
      return Math.sqrt(6 / fans(init, shape).fanIn);
    case 'depthwise-he-uniform':
      // Kernel [kh, kw, channels, multiplier]: each output sums over the kh x kw window of its own channel only.
      return Math.sqrt(6 / elementCount(fans(init, shape).receptiveShape));
    case 'transposed-he-uniform': {
      // Kernel [kh, kw, outC, inC] with stride = kernel size: one tap per output pixel, summed over inC (types.ts).
      const { fanOut, receptiveShape } = fans(init, shape);
      return Math.sqrt(6 / (fanOut / elementCount(receptiveShape)));
    }
  }
}

/** Keras convention: for conv kernels [kh, kw, in, out] the receptive field multiplies both fans. */
function fans(init: ParameterInit, shape: readonly number[]): { fanIn: number; fanOut: number; receptiveShape: number[] } {
  if (shape.length < 2) throw new Error(`${init} needs a kernel of rank >= 2, got shape [${shape.join(', ')}]`);
  const receptiveShape = shape.slice(0, -2);
  const receptiveField = elementCount(receptiveShape);
  return { fanIn: shape[shape.length - 2]! * receptiveField, fanOut: shape[shape.length - 1]! * receptiveField, receptiveShape };
}
