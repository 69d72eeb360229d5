import { z } from 'zod';
import { baseSpecFields, type ParameterInit, type ParameterShape } from './types.js';

const MAX_STAGES = 4;
const MAX_BLOCKS_PER_STAGE = 4;

export const resnetSpecSchema = z.strictObject({
  architecture: z.literal('resnet'),
  ...baseSpecFields,
  /** Filters of the stem and the first stage; each later stage doubles them. */
  width: z
    .number({ error: 'width must be a number' })
    .int('width must be an integer')
    .min(4, 'width must be >= 4')
    .max(64, 'width must be <= 64')
    .default(16),
  /** Residual blocks in each stage; the number of entries is the number of stages. */
  blocksPerStage: z
    .array(
      z
        .number({ error: 'blocksPerStage entries must be numbers' })
        .int('blocksPerStage entries must be integers')
        .min(1, 'blocksPerStage entries must be >= 1')
        .max(MAX_BLOCKS_PER_STAGE, `blocksPerStage entries must be <= ${MAX_BLOCKS_PER_STAGE}`),
      { error: 'blocksPerStage must be an array of block counts' },
    )
    .min(1, 'blocksPerStage must list at least one stage')
    .max(MAX_STAGES, `blocksPerStage must list at most ${MAX_STAGES} stages`)
    // A function, so that no two parsed specs share (and could mutate) one default array.
    .default(() => [2, 2, 2]),
});

/** Square H x W input, `inputSize` pixels a side, NHWC; `width` and `blocksPerStage` are filled in by parsing. */
export type ResnetSpec = z.infer<typeof resnetSpecSchema>;

/** A 'same'-padded convolution with bias; `activation` is applied to its own output. */
export interface ResnetConv {
  name: string;
  inChannels: number;
  filters: number;
  kernelSize: number;
  strides: number;
  activation: 'relu' | 'linear';
  kernelInit: Extract<ParameterInit, 'he-uniform' | 'zeros'>;
}

/**
 * Framework-neutral description of one resnet layer. A residual block computes
 * relu(conv2(conv1(x)) + shortcut(x)), where the shortcut is the identity or, when the block changes the resolution
 * or the filter count, a 1x1 projection with the block's stride.
 */
export type ResnetLayer =
  | ({ kind: 'conv2d' } & ResnetConv)
  | { kind: 'residualBlock'; name: string; conv1: ResnetConv; conv2: ResnetConv; shortcut: ResnetConv | null }
  | { kind: 'globalAveragePool2d' }
  | { kind: 'dense'; name: string; inUnits: number; units: number; activation: 'softmax' };

/**
 * stem conv3x3/2 (width) relu -> stages of basic residual blocks (stage s has width·2^s filters; every stage after
 * the first starts with a stride-2 block) -> global average pool -> dense(classes) softmax. At the defaults (width
 * 16, [2, 2, 2]) that is 14 weighted layers and about 174k parameters, whatever the input size.
 *
 * No batch normalisation: its running mean and variance are state that FedAvg would average as if they were
 * weights (and sites with different intensity statistics would disagree on them), and without it every parameter is
 * an ordinary trainable weight in the flat vector. Training stays stable the Fixup / "zero-init residual" way
 * instead: the last convolution of every residual branch starts at zero, so each block starts as its shortcut and
 * the network as a shallow one whose depth is grown into by training; the other convolutions use he-uniform, which
 * keeps the ReLU activations' scale without normalisation.
 */
export function resnetLayers(spec: ResnetSpec): ResnetLayer[] {
  const layers: ResnetLayer[] = [];
  const conv = (name: string, inChannels: number, filters: number, kernelSize: number, strides: number, activation: ResnetConv['activation'], kernelInit: ResnetConv['kernelInit']): ResnetConv => ({
    name,
    inChannels,
    filters,
    kernelSize,
    strides,
    activation,
    kernelInit,
  });
  layers.push({ kind: 'conv2d', ...conv('stem', spec.channels, spec.width, 3, 2, 'relu', 'he-uniform') });
  let channels = spec.width;
  spec.blocksPerStage.forEach((blocks, stage) => {
    const filters = spec.width * 2 ** stage;
    for (let block = 0; block < blocks; block++) {
      const name = `s${stage + 1}b${block + 1}`;
      const strides = stage > 0 && block === 0 ? 2 : 1;
      const project = strides !== 1 || channels !== filters;
      layers.push({
        kind: 'residualBlock',
        name,
        conv1: conv(`${name}_conv1`, channels, filters, 3, strides, 'relu', 'he-uniform'),
        conv2: conv(`${name}_conv2`, filters, filters, 3, 1, 'linear', 'zeros'),
        shortcut: project ? conv(`${name}_shortcut`, channels, filters, 1, strides, 'linear', 'he-uniform') : null,
      });
      channels = filters;
    }
  });
  layers.push({ kind: 'globalAveragePool2d' });
  layers.push({ kind: 'dense', name: 'logits', inUnits: channels, units: spec.classes, activation: 'softmax' });
  return layers;
}

/**
 * Kernel then bias of every convolution and of the head, in the order tfjs-layers reports `model.weights`: layers
 * by decreasing distance from the output, so within a block conv1, then conv2 and the shortcut, which sit at the
 * same depth and are ordered by the builder's add([branch, shortcut]).
 */
export function resnetParameters(spec: ResnetSpec): ParameterShape[] {
  const params: ParameterShape[] = [];
  const convParams = (c: ResnetConv): void => {
    params.push({ name: `${c.name}/kernel`, shape: [c.kernelSize, c.kernelSize, c.inChannels, c.filters], init: c.kernelInit });
    params.push({ name: `${c.name}/bias`, shape: [c.filters], init: 'zeros' });
  };
  for (const layer of resnetLayers(spec)) {
    switch (layer.kind) {
      case 'conv2d':
        convParams(layer);
        break;
      case 'residualBlock':
        convParams(layer.conv1);
        convParams(layer.conv2);
        if (layer.shortcut) convParams(layer.shortcut);
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
