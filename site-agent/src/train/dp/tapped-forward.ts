import { mobilenetLayers, resnetLayers, smallCnnLayers, type ResnetConv, type ResolvedModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';

/**
 * The forward pass of a model written out in tfjs ops from the spec's layer list (the same list the tfjs-layers
 * builder in ../model.ts reads), so that each weighted layer can be tapped: its input is recorded and a "probe" is
 * added to its pre-activation output z. The gradient of the loss for a probe of zeros is dL/dz for every example at
 * once, which together with the layer's input gives each example's own weight gradient (per-example-gradients.ts).
 * Without probes it computes the same function as the layers model (tested against model.apply).
 */

/** A weighted layer's computation, in what each example's gradient needs. */
export type TappedLayer =
  | { kind: 'conv2d'; name: string; kernelSize: number; strides: number }
  | { kind: 'depthwiseConv2d'; name: string; kernelSize: number; strides: number }
  | { kind: 'dense'; name: string };

/** One weighted layer in a forward pass: what went in, and its pre-activation output's shape per example. */
export interface Tap {
  layer: TappedLayer;
  input: tf.Tensor;
  outputShape: number[];
}

/** The model's weights by describeParameters name (`conv1/kernel`, `conv1/bias`, ...). */
export type WeightsByName = ReadonlyMap<string, tf.Tensor>;

type Activation = 'relu' | 'linear' | 'softmax';

/**
 * Runs the model on `x` [N, H, W, C]. With `probes` (one per weighted layer, in the order the taps come out, each
 * [N, ...outputShape]) each is added to its layer's pre-activation output. Returns the class probabilities and one
 * tap per weighted layer in forward order.
 */
export function tappedForward(spec: ResolvedModelSpec, weights: WeightsByName, x: tf.Tensor4D, probes?: readonly tf.Tensor[]): { probs: tf.Tensor2D; taps: Tap[] } {
  const taps: Tap[] = [];
  const weight = (name: string): tf.Tensor => {
    const w = weights.get(name);
    if (!w) throw new Error(`model ${spec.architecture} has no weight '${name}'`);
    return w;
  };
  const finish = (layer: TappedLayer, input: tf.Tensor, z: tf.Tensor, activation: Activation): tf.Tensor => {
    const probe = probes?.[taps.length];
    if (probes && !probe) throw new Error(`no probe for weighted layer ${taps.length} (${layer.name})`);
    taps.push({ layer, input, outputShape: z.shape.slice(1) });
    const tapped = probe ? tf.add(z, probe) : z;
    if (activation === 'relu') return tf.relu(tapped);
    if (activation === 'softmax') return tf.softmax(tapped);
    return tapped;
  };
  const conv = (c: { name: string; kernelSize: number; strides: number; activation: Activation }, input: tf.Tensor): tf.Tensor4D => {
    const z = tf.add(tf.conv2d(input as tf.Tensor4D, weight(`${c.name}/kernel`) as tf.Tensor4D, c.strides, 'same'), weight(`${c.name}/bias`));
    return finish({ kind: 'conv2d', name: c.name, kernelSize: c.kernelSize, strides: c.strides }, input, z, c.activation) as tf.Tensor4D;
  };
  const depthwise = (c: { name: string; kernelSize: number; strides: number; activation: Activation }, input: tf.Tensor): tf.Tensor4D => {
    const z = tf.add(tf.depthwiseConv2d(input as tf.Tensor4D, weight(`${c.name}/depthwise_kernel`) as tf.Tensor4D, c.strides, 'same'), weight(`${c.name}/bias`));
    return finish({ kind: 'depthwiseConv2d', name: c.name, kernelSize: c.kernelSize, strides: c.strides }, input, z, c.activation) as tf.Tensor4D;
  };
  const dense = (d: { name: string; activation: Activation }, input: tf.Tensor): tf.Tensor2D => {
    const z = tf.add(tf.matMul(input as tf.Tensor2D, weight(`${d.name}/kernel`) as tf.Tensor2D), weight(`${d.name}/bias`));
    return finish({ kind: 'dense', name: d.name }, input, z, d.activation) as tf.Tensor2D;
  };
  const globalMaxPool = (input: tf.Tensor4D): tf.Tensor2D => {
    const [, height, width, channels] = input.shape;
    return tf.reshape(tf.maxPool(input, [height, width], [height, width], 'valid'), [-1, channels]);
  };
  const globalAveragePool = (input: tf.Tensor4D): tf.Tensor2D => tf.mean(input, [1, 2]);

  let h: tf.Tensor = x;
  switch (spec.architecture) {
    case 'small-cnn':
      for (const layer of smallCnnLayers(spec)) {
        if (layer.kind === 'conv2d') h = conv({ ...layer, strides: 1 }, h);
        else if (layer.kind === 'maxPool2d') h = tf.maxPool(h as tf.Tensor4D, layer.poolSize, layer.poolSize, 'valid');
        else if (layer.kind === 'globalMaxPool2d') h = globalMaxPool(h as tf.Tensor4D);
        else h = dense(layer, h);
      }
      break;
    case 'resnet':
      for (const layer of resnetLayers(spec)) {
        if (layer.kind === 'conv2d') h = conv(layer, h);
        else if (layer.kind === 'residualBlock') {
          // Same tap order as the parameter layout: conv1, conv2, then the shortcut.
          const input = h;
          const branch = conv(layer.conv2, conv(layer.conv1, input));
          const shortcut = layer.shortcut ? conv(layer.shortcut as ResnetConv, input) : input;
          h = tf.relu(tf.add(branch, shortcut));
        } else if (layer.kind === 'globalAveragePool2d') h = globalAveragePool(h as tf.Tensor4D);
        else h = dense(layer, h);
      }
      break;
    case 'mobilenet':
      for (const layer of mobilenetLayers(spec)) {
        if (layer.kind === 'conv2d') h = conv(layer, h);
        else if (layer.kind === 'depthwiseConv2d') h = depthwise(layer, h);
        else if (layer.kind === 'globalAveragePool2d') h = globalAveragePool(h as tf.Tensor4D);
        else h = dense(layer, h);
      }
      break;
    case 'unet':
      // Segmentation's per-pixel loss and transposed-convolution taps are not here yet; studies refuse unet for now.
      throw new Error('DP-SGD per-example gradients are not implemented for segmentation models (unet)');
    case 'logistic-regression':
    case 'linear-svm':
      // A linear model's per-example gradient is dL/dz times its input row: train/linear clips it without TensorFlow.js.
      throw new Error(`${spec.architecture} is a linear model on image features: its DP-SGD runs in train/linear, not through tapped layers`);
    default: {
      const unknown: never = spec;
      throw new Error(`no tapped forward pass for architecture ${(unknown as { architecture: string }).architecture}`);
    }
  }
  return { probs: h as tf.Tensor2D, taps };
}
