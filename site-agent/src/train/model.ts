import {
  describeParameters,
  elementCount,
  initialWeights,
  isLinearModelSpec,
  mobilenetLayers,
  parseModelSpec,
  resnetLayers,
  smallCnnLayers,
  unetLayers,
  type Architecture,
  type MobilenetSpec,
  type ModelSpec,
  type NetworkArchitecture,
  type ResnetConv,
  type ResnetSpec,
  type ResolvedModelSpec,
  type SmallCnnSpec,
  type UnetSpec,
} from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

type Builder<A extends Architecture> = (spec: Extract<ResolvedModelSpec, { architecture: A }>) => tfl.LayersModel;

/**
 * One TensorFlow.js builder per network architecture; the mapped type makes a newly added network a compile error
 * here. Linear models on image features have no graph to build (train/linear computes them).
 */
const BUILDERS: { [A in NetworkArchitecture]: Builder<A> } = {
  'small-cnn': buildSmallCnn,
  resnet: buildResnet,
  mobilenet: buildMobilenet,
  unet: buildUnet,
};

/**
 * Builds the tfjs-layers model for a spec. Its `model.weights` correspond one-to-one, in order, name and shape, to
 * `describeParameters(spec)`. The weights are `weights` when given, else the spec's deterministic initial weights,
 * so two sites never start from different random states. The output is [N, classes] for a classification
 * architecture and [N, H, W, classes] for a segmentation one (`architectureTask`); callers that assume the former
 * must check the task.
 */
export function buildModel(spec: ModelSpec, weights?: Float32Array): tfl.LayersModel {
  const valid = parseModelSpec(spec);
  if (isLinearModelSpec(valid)) {
    throw new RangeError(
      `a ${valid.architecture} model is a linear model on hand-crafted image features, not a TensorFlow.js network: there is no graph to build ` +
        '(trainLocal, evaluateModel and predictProbabilities compute it directly)',
    );
  }
  const model = (BUILDERS[valid.architecture] as Builder<typeof valid.architecture>)(valid);
  try {
    assertLayoutMatches(model, valid);
    setFlatWeights(model, weights ?? initialWeights(valid));
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** Replaces every weight of the model from a flat vector in the `describeParameters` layout. */
export function setFlatWeights(model: tfl.LayersModel, flat: Float32Array): void {
  const shapes = model.weights.map(weightShape);
  const expected = shapes.reduce((sum, shape) => sum + elementCount(shape), 0);
  if (flat.length !== expected) {
    throw new RangeError(`weight vector has ${flat.length} values but model '${model.name}' has ${expected} parameters`);
  }
  const bad = flat.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new RangeError(`weight vector value ${bad} is ${flat[bad]}; weights must be finite`);
  tf.tidy(() => {
    let offset = 0;
    const tensors = shapes.map((shape) => {
      const size = elementCount(shape);
      // slice() copies, so the caller may reuse its buffer while the variables keep theirs.
      const tensor = tf.tensor(flat.slice(offset, offset + size), shape, 'float32');
      offset += size;
      return tensor;
    });
    // Variables take their own reference to the data, so tidy may release these handles.
    model.setWeights(tensors);
  });
}

/** Reads every weight of the model into one flat vector in the `describeParameters` layout. */
export function getFlatWeights(model: tfl.LayersModel): Float32Array {
  const weights = model.weights;
  const out = new Float32Array(weights.reduce((sum, w) => sum + elementCount(weightShape(w)), 0));
  let offset = 0;
  for (const weight of weights) {
    // read() returns the variable itself (not a copy), so it must not be disposed.
    const values = weight.read().dataSync();
    out.set(values, offset);
    offset += values.length;
  }
  return out;
}

function buildSmallCnn(spec: SmallCnnSpec): tfl.LayersModel {
  const input = tfl.input({ shape: [spec.inputSize, spec.inputSize, spec.channels], name: 'image' });
  let x: tfl.SymbolicTensor = input;
  // Zero initialisers: setFlatWeights overwrites every weight right away, so spending random draws is pointless.
  for (const layer of smallCnnLayers(spec)) {
    switch (layer.kind) {
      case 'conv2d':
        x = apply(sameConv(layer), x);
        break;
      case 'maxPool2d':
        x = apply(tfl.layers.maxPooling2d({ poolSize: layer.poolSize, strides: layer.poolSize, padding: 'valid' }), x);
        break;
      case 'globalMaxPool2d': {
        // One max-pooling window over the whole feature map, then [N, 1, 1, C] -> [N, C]: the same values as
        // globalMaxPooling2d, but its gradient is MaxPoolGrad (one pass on wasm) instead of Max's, which compares every
        // activation with the maximum and multiplies (a tenth of a small-cnn step). At a tie the gradient goes to the
        // first maximum only rather than to every tied one; both are subgradients, and after a relu ties are zeros,
        // whose gradient the relu drops anyway.
        const [height, width] = (x.shape as number[]).slice(1, 3) as [number, number];
        x = apply(tfl.layers.maxPooling2d({ poolSize: [height, width], strides: [height, width], padding: 'valid' }), x);
        x = apply(tfl.layers.flatten({}), x);
        break;
      }
      case 'dense':
        x = apply(dense(layer), x);
        break;
    }
  }
  return tfl.model({ inputs: input, outputs: x, name: spec.architecture });
}

function buildResnet(spec: ResnetSpec): tfl.LayersModel {
  const input = tfl.input({ shape: [spec.inputSize, spec.inputSize, spec.channels], name: 'image' });
  let x: tfl.SymbolicTensor = input;
  // Zero initialisers, as in buildSmallCnn: setFlatWeights supplies every value.
  const conv = (c: ResnetConv, from: tfl.SymbolicTensor): tfl.SymbolicTensor => apply(sameConv(c), from);
  for (const layer of resnetLayers(spec)) {
    switch (layer.kind) {
      case 'conv2d':
        x = conv(layer, x);
        break;
      case 'residualBlock': {
        const branch = conv(layer.conv2, conv(layer.conv1, x));
        const shortcut = layer.shortcut ? conv(layer.shortcut, x) : x;
        // Branch first: with conv2 and the shortcut at the same depth, this input order puts conv2's weights
        // before the shortcut's in model.weights, as resnetParameters lists them.
        x = apply(tfl.layers.add({ name: `${layer.name}_add` }), [branch, shortcut]);
        x = apply(tfl.layers.activation({ name: `${layer.name}_relu`, activation: 'relu' }), x);
        break;
      }
      case 'globalAveragePool2d':
        x = apply(tfl.layers.globalAveragePooling2d({}), x);
        break;
      case 'dense':
        x = apply(dense(layer), x);
        break;
    }
  }
  return tfl.model({ inputs: input, outputs: x, name: spec.architecture });
}

function buildMobilenet(spec: MobilenetSpec): tfl.LayersModel {
  const input = tfl.input({ shape: [spec.inputSize, spec.inputSize, spec.channels], name: 'image' });
  let x: tfl.SymbolicTensor = input;
  for (const layer of mobilenetLayers(spec)) {
    switch (layer.kind) {
      case 'conv2d':
        x = apply(sameConv(layer), x);
        break;
      case 'depthwiseConv2d':
        x = apply(
          tfl.layers.depthwiseConv2d({
            name: layer.name,
            kernelSize: layer.kernelSize,
            depthMultiplier: 1,
            strides: layer.strides,
            padding: 'same',
            activation: layer.activation,
            depthwiseInitializer: 'zeros',
            biasInitializer: 'zeros',
          }),
          x,
        );
        break;
      case 'globalAveragePool2d':
        x = apply(tfl.layers.globalAveragePooling2d({}), x);
        break;
      case 'dense':
        x = apply(dense(layer), x);
        break;
    }
  }
  return tfl.model({ inputs: input, outputs: x, name: spec.architecture });
}

function buildUnet(spec: UnetSpec): tfl.LayersModel {
  const input = tfl.input({ shape: [spec.inputSize, spec.inputSize, spec.channels], name: 'image' });
  let x: tfl.SymbolicTensor = input;
  const skips = new Map<number, tfl.SymbolicTensor>();
  for (const layer of unetLayers(spec)) {
    switch (layer.kind) {
      case 'conv2d':
        x = apply(sameConv(layer), x);
        break;
      case 'saveSkip':
        skips.set(layer.level, x);
        break;
      case 'maxPool2d':
        x = apply(tfl.layers.maxPooling2d({ poolSize: layer.poolSize, strides: layer.poolSize, padding: 'valid' }), x);
        break;
      case 'conv2dTranspose':
        x = apply(
          tfl.layers.conv2dTranspose({
            name: layer.name,
            filters: layer.filters,
            kernelSize: layer.kernelSize,
            strides: layer.strides,
            padding: 'same',
            activation: layer.activation,
            kernelInitializer: 'zeros',
            biasInitializer: 'zeros',
          }),
          x,
        );
        break;
      case 'concatSkip': {
        const skip = skips.get(layer.level);
        if (!skip) throw new Error(`unet layer list concatenates skip ${layer.level} before saving it`);
        // Upsampled first, then the skip: the channel order unetLayers documents for the decoder conv1 kernels.
        x = apply(tfl.layers.concatenate({ name: `dec${layer.level}_concat`, axis: -1 }), [x, skip]);
        break;
      }
    }
  }
  return tfl.model({ inputs: input, outputs: x, name: spec.architecture });
}

/**
 * A 'same'-padded convolution with bias and its own activation ('softmax' applies over the last axis: per-pixel
 * class probabilities in a U-Net). Zero initialisers: setFlatWeights overwrites every weight right away.
 */
function sameConv(layer: { name: string; filters: number; kernelSize: number; strides?: number; activation: 'relu' | 'linear' | 'softmax' }): tfl.layers.Layer {
  return tfl.layers.conv2d({
    name: layer.name,
    filters: layer.filters,
    kernelSize: layer.kernelSize,
    ...(layer.strides !== undefined ? { strides: layer.strides } : {}),
    padding: 'same',
    activation: layer.activation,
    kernelInitializer: 'zeros',
    biasInitializer: 'zeros',
  });
}

function dense(layer: { name: string; units: number; activation: 'relu' | 'softmax' }): tfl.layers.Layer {
  return tfl.layers.dense({
    name: layer.name,
    units: layer.units,
    activation: layer.activation,
    kernelInitializer: 'zeros',
    biasInitializer: 'zeros',
  });
}

/** LayerVariable.shape admits nulls (unknown batch dims); a created weight's concrete shape is its variable's. */
function weightShape(weight: tfl.LayerVariable): number[] {
  return weight.read().shape;
}

function apply(layer: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]): tfl.SymbolicTensor {
  return layer.apply(x) as tfl.SymbolicTensor;
}

/**
 * Guards the one-to-one mapping the flat layout relies on; a mismatch is a bug in a builder, not in input. Names
 * are compared as well as shapes because two tensors of one shape (e.g. two convolutions of a residual block) could
 * otherwise swap places unnoticed. `originalName` is the layer-scoped name, before tfjs makes it globally unique.
 */
function assertLayoutMatches(model: tfl.LayersModel, spec: ModelSpec): void {
  const params = describeParameters(spec);
  const weights = model.weights;
  const mismatch =
    weights.length !== params.length ||
    weights.some((w, i) => w.originalName !== params[i]!.name || weightShape(w).join(',') !== params[i]!.shape.join(','));
  if (mismatch) {
    const got = weights.map((w) => `${w.originalName}[${weightShape(w).join(',')}]`).join(' ');
    const want = params.map((p) => `${p.name}[${p.shape.join(',')}]`).join(' ');
    throw new Error(`${spec.architecture} builder does not match describeParameters: built ${got}, expected ${want}`);
  }
}
