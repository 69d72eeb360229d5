import { z } from 'zod';
import { baseSpecFields, type ParameterShape } from './types.js';

/** The MobileNet width multipliers; a fixed set keeps studies comparable with each other and with the literature. */
const ALPHAS = [0.25, 0.5, 0.75, 1] as const;

export const mobilenetSpecSchema = z.strictObject({
  architecture: z.literal('mobilenet'),
  ...baseSpecFields,
  /** Width multiplier: every layer's filter count is scaled by it (MobileNet's alpha). */
  alpha: z.literal(ALPHAS, { error: `alpha must be one of ${ALPHAS.join(', ')}` }).default(0.5),
});

/** Square H x W input, `inputSize` pixels a side, NHWC; `alpha` is filled in by parsing. */
export type MobilenetSpec = z.infer<typeof mobilenetSpecSchema>;

/** Framework-neutral description of one mobilenet layer; every convolution is 'same'-padded, with bias and ReLU. */
export type MobilenetLayer =
  | { kind: 'conv2d'; name: string; inChannels: number; filters: number; kernelSize: number; strides: number; activation: 'relu' }
  | { kind: 'depthwiseConv2d'; name: string; channels: number; kernelSize: number; strides: number; activation: 'relu' }
  | { kind: 'globalAveragePool2d' }
  | { kind: 'dense'; name: string; inUnits: number; units: number; activation: 'softmax' };

/** [filters at alpha 1, stride] of each depthwise-separable block: the first half of MobileNet v1. */
const BLOCKS: ReadonlyArray<readonly [number, 1 | 2]> = [
  [64, 1],
  [128, 2],
  [128, 1],
  [256, 2],
  [256, 1],
  [512, 2],
];
const STEM_FILTERS = 32;

/**
 * stem conv3x3/2 (32·alpha) -> six depthwise-separable blocks (depthwise 3x3 then pointwise 1x1, each followed by
 * ReLU; strides as in MobileNet v1, total downsampling 16) -> global average pool -> dense(classes) softmax. About
 * 70k parameters at alpha 0.5 (19k at 0.25, 267k at 1), whatever the input size. MobileNet v1 goes on with five
 * more 512 blocks and two of 1024; those hold most of its 4.2M parameters, more than a CKKS-encrypted update should
 * carry per round for the data sizes a site typically has.
 *
 * Like resnet it has no batch normalisation (its moving statistics are state FedAvg cannot average meaningfully);
 * convolutions carry biases instead, and he-uniform initialisation keeps the activations' scale through the
 * thirteen ReLU layers. ReLU rather than MobileNet's ReLU6: the cap at 6 is there for 8-bit inference, which does
 * not happen here, and tfjs computes ReLU6 and its gradient from separate broadcasting kernels that took a fifth of
 * a wasm training step, where ReLU is fused into the convolution.
 */
export function mobilenetLayers(spec: MobilenetSpec): MobilenetLayer[] {
  // Exact for every allowed alpha; rounding only guards the arithmetic.
  const scaled = (filters: number): number => Math.round(filters * spec.alpha);
  const layers: MobilenetLayer[] = [];
  let channels = scaled(STEM_FILTERS);
  layers.push({ kind: 'conv2d', name: 'stem', inChannels: spec.channels, filters: channels, kernelSize: 3, strides: 2, activation: 'relu' });
  BLOCKS.forEach(([filters, strides], i) => {
    const out = scaled(filters);
    layers.push({ kind: 'depthwiseConv2d', name: `b${i + 1}_dw`, channels, kernelSize: 3, strides, activation: 'relu' });
    layers.push({ kind: 'conv2d', name: `b${i + 1}_pw`, inChannels: channels, filters: out, kernelSize: 1, strides: 1, activation: 'relu' });
    channels = out;
  });
  layers.push({ kind: 'globalAveragePool2d' });
  layers.push({ kind: 'dense', name: 'logits', inUnits: channels, units: spec.classes, activation: 'softmax' });
  return layers;
}

/** Kernel then bias of each weighted layer in forward order, the order tfjs-layers reports `model.weights`. */
export function mobilenetParameters(spec: MobilenetSpec): ParameterShape[] {
  const params: ParameterShape[] = [];
  for (const layer of mobilenetLayers(spec)) {
    switch (layer.kind) {
      case 'conv2d':
        params.push({ name: `${layer.name}/kernel`, shape: [layer.kernelSize, layer.kernelSize, layer.inChannels, layer.filters], init: 'he-uniform' });
        params.push({ name: `${layer.name}/bias`, shape: [layer.filters], init: 'zeros' });
        break;
      case 'depthwiseConv2d':
        // Depth multiplier 1: one kh x kw filter per input channel.
        params.push({ name: `${layer.name}/depthwise_kernel`, shape: [layer.kernelSize, layer.kernelSize, layer.channels, 1], init: 'depthwise-he-uniform' });
        params.push({ name: `${layer.name}/bias`, shape: [layer.channels], init: 'zeros' });
        break;
      case 'dense':
        params.push({ name: `${layer.name}/kernel`, shape: [layer.inUnits, layer.units], init: 'glorot-uniform' });
        params.push({ name: `${layer.name}/bias`, shape: [layer.units], init: 'zeros' });
        break;
      case 'globalAveragePool2d':
        break;
    }
  }
  return params;
}
