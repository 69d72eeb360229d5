import { z } from 'zod';
import { baseSpecFields, type ParameterShape } from './types.js';

export const smallCnnSpecSchema = z.strictObject({
  architecture: z.literal('small-cnn'),
  ...baseSpecFields,
});

/** Square H x W input, `inputSize` pixels a side, NHWC. */
export type SmallCnnSpec = z.infer<typeof smallCnnSpecSchema>;

/**
 * Framework-neutral description of one small-cnn layer. The site agent builds its TensorFlow.js model from this
 * list so the filter counts live in one place and cannot drift from the parameter layout.
 */
export type SmallCnnLayer =
  | { kind: 'conv2d'; name: string; inChannels: number; filters: number; kernelSize: number; activation: 'relu' }
  | { kind: 'maxPool2d'; poolSize: number }
  | { kind: 'globalMaxPool2d' }
  | { kind: 'dense'; name: string; inUnits: number; units: number; activation: 'relu' | 'softmax' };

const CONV_FILTERS = [16, 32, 32] as const;
const HIDDEN_UNITS = 32;
const KERNEL_SIZE = 3;
const POOL_SIZE = 2;

/**
 * conv3x3(16) relu maxpool2 -> conv3x3(32) relu maxpool2 -> conv3x3(32) relu -> global max pool -> dense(32) relu
 * -> dense(classes) softmax. Convolutions use 'same' padding; pooling is 'valid' (floor), as in Keras.
 *
 * The global max pool (rather than flatten) makes the head ask "is this feature anywhere in the image", which
 * is what finding a small lesion needs, keeps the parameter count independent of the input size (about 15k
 * parameters, so updates stay small on the wire) and trains in a few rounds where a flatten head did not.
 */
export function smallCnnLayers(spec: SmallCnnSpec): SmallCnnLayer[] {
  const layers: SmallCnnLayer[] = [];
  let channels: number = spec.channels;
  CONV_FILTERS.forEach((filters, i) => {
    layers.push({ kind: 'conv2d', name: `conv${i + 1}`, inChannels: channels, filters, kernelSize: KERNEL_SIZE, activation: 'relu' });
    if (i < CONV_FILTERS.length - 1) layers.push({ kind: 'maxPool2d', poolSize: POOL_SIZE });
    channels = filters;
  });
  layers.push({ kind: 'globalMaxPool2d' });
  layers.push({ kind: 'dense', name: 'dense1', inUnits: channels, units: HIDDEN_UNITS, activation: 'relu' });
  layers.push({ kind: 'dense', name: 'logits', inUnits: HIDDEN_UNITS, units: spec.classes, activation: 'softmax' });
  return layers;
}

/** Kernel then bias for each weighted layer, in forward order: the same order tfjs-layers reports `model.weights`. */
export function smallCnnParameters(spec: SmallCnnSpec): ParameterShape[] {
  const params: ParameterShape[] = [];
  for (const layer of smallCnnLayers(spec)) {
    if (layer.kind === 'conv2d') {
      params.push({ name: `${layer.name}/kernel`, shape: [layer.kernelSize, layer.kernelSize, layer.inChannels, layer.filters], init: 'glorot-uniform' });
      params.push({ name: `${layer.name}/bias`, shape: [layer.filters], init: 'zeros' });
    } else if (layer.kind === 'dense') {
      params.push({ name: `${layer.name}/kernel`, shape: [layer.inUnits, layer.units], init: 'glorot-uniform' });
      params.push({ name: `${layer.name}/bias`, shape: [layer.units], init: 'zeros' });
    }
  }
  return params;
}
