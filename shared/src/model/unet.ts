import { z } from 'zod';
import { baseSpecFields, type ParameterShape } from './types.js';

const MAX_DEPTH = 5;

export const unetSpecSchema = z
  .strictObject({
    architecture: z.literal('unet'),
    ...baseSpecFields,
    /** Filters of the first encoder level; level l has width·2^l, the bottleneck width·2^depth. */
    width: z
      .number({ error: 'width must be a number' })
      .int('width must be an integer')
      .min(4, 'width must be >= 4')
      .max(64, 'width must be <= 64')
      .default(16),
    /** Downsampling levels: the encoder halves the image `depth` times and the decoder doubles it back. */
    depth: z
      .number({ error: 'depth must be a number' })
      .int('depth must be an integer')
      .min(1, 'depth must be >= 1')
      .max(MAX_DEPTH, `depth must be <= ${MAX_DEPTH}`)
      .default(3),
  })
  .superRefine((spec, ctx) => {
    // Pooling floors odd sizes, after which the upsampled map no longer lines up with its skip connection.
    const factor = 2 ** spec.depth;
    if (spec.inputSize % factor !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['inputSize'],
        message: `inputSize ${spec.inputSize} is not divisible by 2^${spec.depth} = ${factor} (depth ${spec.depth}): every level halves the image`,
      });
    }
  });

/**
 * Square H x W input, `inputSize` pixels a side, NHWC; `width` and `depth` are filled in by parsing. `classes` counts
 * the background as class 0, so a single structure to segment is 2 classes.
 */
export type UnetSpec = z.infer<typeof unetSpecSchema>;

/** A 'same'-padded convolution with bias; `activation` applies to its own output ('softmax': over the channels). */
export interface UnetConv {
  name: string;
  inChannels: number;
  filters: number;
  kernelSize: 3 | 1;
  activation: 'relu' | 'softmax';
}

/**
 * Framework-neutral description of one U-Net layer, in forward order. `saveSkip` keeps the current feature map as
 * the skip connection of its level; `concatSkip` joins the upsampled map (first) and that level's skip (second)
 * along the channels, so a decoder conv1 kernel's input channels are [upsampled..., skip...].
 */
export type UnetLayer =
  | ({ kind: 'conv2d' } & UnetConv)
  | { kind: 'saveSkip'; level: number }
  | { kind: 'maxPool2d'; poolSize: 2 }
  | { kind: 'conv2dTranspose'; name: string; inChannels: number; filters: number; kernelSize: 2; strides: 2; activation: 'linear' }
  | { kind: 'concatSkip'; level: number; channels: number };

/**
 * The 2D U-Net (Ronneberger et al. 2015) with 'same' padding, so the output has the input's size and skips need no
 * cropping. Encoder level l (l = 1..depth): two conv3x3 (width·2^(l-1)) relu, kept as skip l, then maxpool 2x2.
 * Bottleneck: two conv3x3 (width·2^depth) relu. Decoder level l (l = depth..1): conv-transpose 2x2/2 halving the
 * filters (linear, as in the paper), concatenation with skip l, two conv3x3 (width·2^(l-1)) relu. Head: conv1x1
 * (classes) with a softmax over the channels: per-pixel class probabilities, output [N, H, W, classes]. At the
 * defaults (width 16, depth 3) about 482k parameters, whatever the input size.
 *
 * No batch normalisation, for the reasons resnet.ts gives (its statistics are state FedAvg would average as weights).
 */
export function unetLayers(spec: UnetSpec): UnetLayer[] {
  const layers: UnetLayer[] = [];
  const filtersAt = (level: number): number => spec.width * 2 ** level;
  const conv = (name: string, inChannels: number, filters: number): UnetLayer => ({ kind: 'conv2d', name, inChannels, filters, kernelSize: 3, activation: 'relu' });
  let channels: number = spec.channels;
  for (let level = 1; level <= spec.depth; level++) {
    const filters = filtersAt(level - 1);
    layers.push(conv(`enc${level}_conv1`, channels, filters), conv(`enc${level}_conv2`, filters, filters));
    layers.push({ kind: 'saveSkip', level }, { kind: 'maxPool2d', poolSize: 2 });
    channels = filters;
  }
  const bottom = filtersAt(spec.depth);
  layers.push(conv('bottleneck_conv1', channels, bottom), conv('bottleneck_conv2', bottom, bottom));
  channels = bottom;
  for (let level = spec.depth; level >= 1; level--) {
    const filters = filtersAt(level - 1);
    layers.push({ kind: 'conv2dTranspose', name: `dec${level}_up`, inChannels: channels, filters, kernelSize: 2, strides: 2, activation: 'linear' });
    // The skip of level l has filtersAt(l - 1) channels too, so the concatenation doubles them.
    layers.push({ kind: 'concatSkip', level, channels: 2 * filters });
    layers.push(conv(`dec${level}_conv1`, 2 * filters, filters), conv(`dec${level}_conv2`, filters, filters));
    channels = filters;
  }
  layers.push({ kind: 'conv2d', name: 'logits', inChannels: channels, filters: spec.classes, kernelSize: 1, activation: 'softmax' });
  return layers;
}

/**
 * Kernel then bias of every weighted layer in forward order, the order tfjs-layers reports `model.weights` (the
 * skip connections only add edges to later layers, so the topological order is the forward one; the site agent's
 * assertLayoutMatches checks it). Transposed-convolution kernels are [kh, kw, outC, inC], as TensorFlow stores them.
 */
export function unetParameters(spec: UnetSpec): ParameterShape[] {
  const params: ParameterShape[] = [];
  for (const layer of unetLayers(spec)) {
    if (layer.kind === 'conv2d') {
      const k = layer.kernelSize;
      // The softmax head is not followed by a ReLU, so it takes glorot as the classification heads do. Its bias
      // starts at the background prior (focal loss's prior initialisation, Lin et al. 2017): from zeros every pixel
      // starts at 1/classes, and Adam, which moves a weight by about the learning rate per step, spent the first
      // hundreds of steps learning that most pixels are background before anything about the foreground (the soft
      // Dice of half-image predictions gives almost no gradient): in the segmentation benchmark FedAvg's held-out Dice
      // stayed 0 for the first 6 to 8 of 20 rounds, and a site alone often ran out of rounds.
      const relu = layer.activation === 'relu';
      params.push({ name: `${layer.name}/kernel`, shape: [k, k, layer.inChannels, layer.filters], init: relu ? 'he-uniform' : 'glorot-uniform' });
      params.push({ name: `${layer.name}/bias`, shape: [layer.filters], init: relu ? 'zeros' : 'background-prior' });
    } else if (layer.kind === 'conv2dTranspose') {
      const k = layer.kernelSize;
      params.push({ name: `${layer.name}/kernel`, shape: [k, k, layer.filters, layer.inChannels], init: 'transposed-he-uniform' });
      params.push({ name: `${layer.name}/bias`, shape: [layer.filters], init: 'zeros' });
    }
  }
  return params;
}
