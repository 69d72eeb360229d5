import { z } from 'zod';

/**
 * How a parameter tensor is initialised by {@link initialWeights}. The he-uniform kinds suit ReLU networks without
 * normalisation layers (limit sqrt(6 / fanIn)); 'depthwise-he-uniform' counts only the kernel window as fan-in,
 * since a depthwise filter never sums across channels. 'transposed-he-uniform' is for a transposed convolution
 * whose stride equals its kernel size (kernel [kh, kw, outC, inC]): the windows do not overlap, so each output pixel
 * gets exactly one kernel tap summed over the inC input channels, and the fan-in is inC (Keras' he_uniform would
 * count kh·kw·outC, which for a 2x2/2 up-convolution halving the filters is 2·inC and halves the signal's variance).
 * 'background-prior' is a segmentation head's bias: ln 99 for the background (class 0), 0 for the other classes, so
 * every pixel starts out about 99% background, as most pixels of a medical image are (see unetParameters).
 */
export type ParameterInit = 'glorot-uniform' | 'he-uniform' | 'depthwise-he-uniform' | 'transposed-he-uniform' | 'background-prior' | 'zeros';

/** One trainable tensor of a model, as it appears in the flat weight vector. */
export interface ParameterShape {
  /** Stable name, `<layer>/<weight>` as tfjs-layers names it: `kernel`, `bias` or `depthwise_kernel`. */
  name: string;
  /**
   * Row-major (C order) shape, TensorFlow conventions: conv kernels [kh, kw, inC, outC], transposed-conv kernels
   * [kh, kw, outC, inC], dense kernels [in, out].
   */
  shape: number[];
  init: ParameterInit;
}

/** Fields every architecture's spec carries; each architecture adds its own literal `architecture` tag. */
export const baseSpecFields = {
  inputSize: z
    .number({ error: 'inputSize must be a number' })
    .int('inputSize must be an integer')
    .min(16, 'inputSize must be >= 16')
    .max(512, 'inputSize must be <= 512'),
  channels: z.union([z.literal(1), z.literal(3)], { error: 'channels must be 1 or 3' }),
  classes: z
    .number({ error: 'classes must be a number' })
    .int('classes must be an integer')
    .min(2, 'classes must be >= 2'),
  seed: z
    .number({ error: 'seed must be a number' })
    .int('seed must be an integer')
    .min(0, 'seed must be an unsigned 32-bit integer (>= 0)')
    .max(0xffff_ffff, 'seed must be an unsigned 32-bit integer (<= 4294967295)'),
} as const;
