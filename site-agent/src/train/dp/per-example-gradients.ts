import { describeParameters, elementCount, type ResolvedModelSpec } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { EPSILON, SliceGradients, type GradientSource, type Slice, type SliceStats } from '../parallel/slice-gradients.js';
import { tappedForward, type Tap } from './tapped-forward.js';
import { perExampleDepthwiseKernel } from './per-example-depthwise.js';
import { perExampleConvKernelWasm } from './wasm-per-example-conv.js';

/**
 * Per-example float budget of one chunk: the per-example gradients of a chunk of examples (chunk x parameters) and
 * the largest layer's patch matrix (chunk x positions x kernel) stay under it, whatever the batch and input size.
 */
const CHUNK_VALUES = 8 * 1024 * 1024;
/** Added to each norm before dividing, as Opacus does, so that an all-zero gradient is not divided by zero. */
const NORM_GUARD = 1e-6;

/**
 * DP-SGD's gradient of a slice: each example's gradient of its (class-weighted) cross-entropy, scaled down to L2
 * norm at most `clipNorm` over all the model's weights, and summed, into a flat vector in the describeParameters
 * layout. The caller adds the noise (once per batch, not per slice) and divides by the expected batch size.
 *
 * Each example's gradient is exact, computed from one batched pass rather than one pass per example: a forward pass
 * with a zero probe added to every weighted layer's pre-activation output z and a backward pass for the probes gives
 * dL/dz for every example; a layer's weight gradient for example i is then a function of that example's input to the
 * layer and its dL/dz alone (convolution: its input patches transposed times dL/dz; dense: the outer product; bias:
 * dL/dz summed over positions). Examples are taken a chunk at a time so memory stays bounded.
 */
export class ClippedSliceGradients implements GradientSource {
  private readonly plain: SliceGradients;
  private readonly byName: Map<string, tf.Tensor>;
  /** Each parameter tensor's offset in the flat layout, by name. */
  private readonly offsets: Map<string, number>;
  /** Per-example shape of each weighted layer's pre-activation output, found once from a one-image pass. */
  private readonly probeShapes: number[][];
  private readonly largestPatch: number;
  readonly size: number;

  constructor(
    model: tfl.LayersModel,
    private readonly spec: ResolvedModelSpec,
    readonly clipNorm: number,
    private readonly classWeights?: tf.Tensor1D,
  ) {
    if (!Number.isFinite(clipNorm) || clipNorm <= 0) throw new RangeError(`clipNorm must be a finite number > 0, got ${clipNorm}`);
    this.plain = new SliceGradients(model, spec.classes, classWeights);
    this.size = this.plain.size;
    const params = describeParameters(spec);
    const variables = model.weights.map((w) => w.read());
    this.byName = new Map(params.map((p, i) => [p.name, variables[i] as tf.Tensor]));
    this.offsets = new Map();
    let offset = 0;
    for (const p of params) {
      this.offsets.set(p.name, offset);
      offset += elementCount(p.shape);
    }
    const shapes = tf.tidy(() => {
      const { taps } = tappedForward(spec, this.byName, tf.zeros([1, spec.inputSize, spec.inputSize, spec.channels]));
      return taps.map((t) => ({ output: t.outputShape, patch: patchValues(t) }));
    });
    this.probeShapes = shapes.map((s) => s.output);
    this.largestPatch = Math.max(...shapes.map((s) => s.patch));
  }

  setWeights(flat: Float32Array): void {
    this.plain.setWeights(flat);
  }

  /** The slice's summed clipped per-example gradients into `out` (this.size values), and its figures. */
  compute(slice: Slice, out: Float32Array): SliceStats {
    if (out.length !== this.size) throw new RangeError(`gradient vector has ${out.length} values, the model ${this.size}`);
    const sum = new Float64Array(this.size);
    const stats = { loss: 0, correct: 0, nonFinite: 0, clipped: 0 };
    const chunk = Math.max(1, Math.floor(CHUNK_VALUES / Math.max(this.size, this.largestPatch)));
    for (let start = 0; start < slice.count; start += chunk) {
      const count = Math.min(chunk, slice.count - start);
      const { perExample, figures } = this.perExample(this.part(slice, start, count));
      const scales = clipScales(perExample, count, this.clipNorm);
      stats.clipped += scales.clipped;
      for (const p of perExample) {
        const size = p.values.length / count;
        for (let i = 0; i < count; i++) {
          const scale = scales.values[i] as number;
          const row = i * size;
          for (let j = 0; j < size; j++) sum[p.offset + j] = (sum[p.offset + j] as number) + scale * (p.values[row + j] as number);
        }
      }
      stats.loss += figures.loss;
      stats.correct += figures.correct;
      stats.nonFinite += figures.nonFinite;
    }
    out.set(sum);
    return stats;
  }

  /**
   * Every example's gradient, unclipped, as [count, size] row-major in the flat layout (for tests and diagnostics;
   * compute() never holds more than a chunk of them).
   */
  perExampleGradients(slice: Slice): Float32Array {
    const out = new Float32Array(slice.count * this.size);
    for (const p of this.perExample(slice).perExample) {
      const size = p.values.length / slice.count;
      for (let i = 0; i < slice.count; i++) out.set(p.values.subarray(i * size, (i + 1) * size), i * this.size + p.offset);
    }
    return out;
  }

  private part(slice: Slice, start: number, count: number): Slice {
    const imageSize = slice.height * slice.width * slice.channels;
    return { ...slice, count, pixels: slice.pixels.subarray(start * imageSize, (start + count) * imageSize), labels: slice.labels.subarray(start, start + count) };
  }

  /** Per-example gradients of each parameter tensor ([count, size of that tensor], row-major) and the slice's figures. */
  private perExample(slice: Slice): { perExample: PerExample[]; figures: Omit<SliceStats, 'clipped'> } {
    const { spec, classWeights } = this;
    const n = slice.count;
    let taps: Tap[] = [];
    let figures: tf.Tensor1D | undefined;
    const dzs = tf.tidy(() => {
      const xs = tf.tensor4d(slice.pixels, [n, slice.height, slice.width, slice.channels], 'float32');
      const ys = tf.tensor1d(slice.labels, 'int32');
      const probes = this.probeShapes.map((shape) => tf.zeros([n, ...shape]));
      return tf.grads((...p: tf.Tensor[]) => {
        const pass = tappedForward(spec, this.byName, xs, p);
        // The layers' inputs outlive the tidy: each example's weight gradient needs them.
        taps = pass.taps.map((t) => ({ ...t, input: tf.keep(t.input) }));
        const perSample = tf.neg(tf.sum(tf.mul(tf.oneHot(ys, spec.classes), tf.log(tf.clipByValue(pass.probs, EPSILON, 1 - EPSILON))), 1));
        const correct = tf.sum(tf.cast(tf.equal(tf.argMax(pass.probs, 1), ys), 'float32'));
        const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(pass.probs)), 'float32'));
        figures = tf.keep(tf.stack([tf.sum(perSample), correct, nonFinite]) as tf.Tensor1D);
        return classWeights ? tf.sum(tf.mul(perSample, tf.gather(classWeights, ys))) : tf.sum(perSample);
      })(probes);
    });
    try {
      const perExample: PerExample[] = [];
      taps.forEach((tap, i) => {
        for (const [name, values] of layerGradients(tap, dzs[i] as tf.Tensor, n)) {
          const offset = this.offsets.get(name);
          if (offset === undefined) throw new Error(`no parameter '${name}' in the ${spec.architecture} layout`);
          perExample.push({ offset, values });
        }
      });
      const [loss = NaN, correct = 0, nonFinite = 0] = (figures as unknown as tf.Tensor1D).dataSync();
      return { perExample, figures: { loss, correct, nonFinite } };
    } finally {
      tf.dispose([...dzs, ...taps.map((t) => t.input), ...(figures ? [figures] : [])]);
    }
  }
}

/** One parameter tensor's per-example gradients: [count, size] row-major, and where the tensor sits in the layout. */
interface PerExample {
  offset: number;
  values: Float32Array;
}

/**
 * min(1, C / (‖g_i‖ + 1e-6)) for each example, the norm over every parameter tensor of the example's gradient; and
 * how many examples were actually scaled down.
 */
function clipScales(perExample: readonly PerExample[], count: number, clipNorm: number): { values: Float64Array; clipped: number } {
  const squares = new Float64Array(count);
  for (const p of perExample) {
    const size = p.values.length / count;
    for (let i = 0; i < count; i++) {
      let sq = 0;
      for (let j = i * size; j < (i + 1) * size; j++) sq += (p.values[j] as number) ** 2;
      squares[i] = (squares[i] as number) + sq;
    }
  }
  let clipped = 0;
  const values = squares.map((sq) => {
    const scale = Math.min(1, clipNorm / (Math.sqrt(sq) + NORM_GUARD));
    if (scale < 1) clipped++;
    return scale;
  });
  return { values, clipped };
}

/** Values of a layer's patch matrix for one example (positions x kernel), what the chunk size must budget for. */
function patchValues(tap: Tap): number {
  if (tap.layer.kind !== 'conv2d') return 0;
  const positions = (tap.outputShape[0] as number) * (tap.outputShape[1] as number);
  return positions * tap.layer.kernelSize * tap.layer.kernelSize * (tap.input.shape[3] as number);
}

/** TensorFlow's 'same' padding along one axis: before and after. */
function samePadding(size: number, kernel: number, stride: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + kernel - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/**
 * The input under each filter offset (kh, kw), for every output position: kernelSize² tensors [N, outH, outW, C],
 * in the filter's (kh, kw) order.
 */
function shiftedInputs(input: tf.Tensor4D, kernelSize: number, strides: number, outHeight: number, outWidth: number): tf.Tensor4D[] {
  const [n, height, width, channels] = input.shape;
  const [top, bottom] = samePadding(height, kernelSize, strides);
  const [left, right] = samePadding(width, kernelSize, strides);
  const padded = top + bottom + left + right > 0 ? tf.pad(input, [[0, 0], [top, bottom], [left, right], [0, 0]]) : input;
  const shifted: tf.Tensor4D[] = [];
  for (let kh = 0; kh < kernelSize; kh++) {
    for (let kw = 0; kw < kernelSize; kw++) {
      const end = [n, kh + (outHeight - 1) * strides + 1, kw + (outWidth - 1) * strides + 1, channels];
      shifted.push(kernelSize === 1 && strides === 1 ? padded : (tf.stridedSlice(padded, [0, kh, kw, 0], end, [1, strides, strides, 1]) as tf.Tensor4D));
    }
  }
  return shifted;
}

/** Each parameter tensor of one weighted layer with its per-example gradients, [N, size], from its input and dL/dz. */
function layerGradients(tap: Tap, dz: tf.Tensor, n: number): Array<[string, Float32Array]> {
  const { layer } = tap;
  const read = (t: tf.Tensor): Float32Array => {
    try {
      return t.dataSync() as Float32Array;
    } finally {
      t.dispose();
    }
  };
  if (layer.kind === 'dense') {
    const a = tap.input as tf.Tensor2D;
    const [, inUnits] = a.shape;
    const units = dz.shape[1] as number;
    const kernel = tf.tidy(() => tf.matMul(tf.reshape(a, [n, inUnits, 1]), tf.reshape(dz, [n, 1, units])));
    return [
      [`${layer.name}/kernel`, read(kernel)],
      [`${layer.name}/bias`, dz.dataSync() as Float32Array],
    ];
  }
  const bias = read(tf.sum(dz, [1, 2]));
  const [, outHeight, outWidth, outChannels] = dz.shape as [number, number, number, number];
  const input = tap.input as tf.Tensor4D;
  const [top] = samePadding(input.shape[1], layer.kernelSize, layer.strides);
  const [left] = samePadding(input.shape[2], layer.kernelSize, layer.strides);
  if (layer.kind === 'depthwiseConv2d') {
    const kernel = perExampleDepthwiseKernel(input.dataSync() as Float32Array, input.shape, dz.dataSync() as Float32Array, [outHeight, outWidth], layer.kernelSize, layer.strides, { top, left });
    return [
      [`${layer.name}/depthwise_kernel`, kernel],
      [`${layer.name}/bias`, bias],
    ];
  }
  if (tf.getBackend() === 'wasm') {
    return [
      [`${layer.name}/kernel`, perExampleConvKernelWasm(input, dz as tf.Tensor4D, layer.kernelSize, layer.strides, { top, left })],
      [`${layer.name}/bias`, bias],
    ];
  }
  // Other backends: patches [N, positions, kh·kw·C] in the filter's [kh, kw, C] order, times dz [N, positions, outC]
  // per example, in tensor ops (a batched product is these backends' ordinary path).
  const kernel = tf.tidy(() => {
    const shifted = shiftedInputs(input, layer.kernelSize, layer.strides, outHeight, outWidth);
    const positions = outHeight * outWidth;
    const patches = tf.reshape(shifted.length === 1 ? (shifted[0] as tf.Tensor4D) : tf.concat(shifted, 3), [n, positions, -1]);
    return tf.reshape(tf.matMul(patches, tf.reshape(dz, [n, positions, outChannels]), true, false), [n, -1]);
  });
  return [
    [`${layer.name}/kernel`, read(kernel)],
    [`${layer.name}/bias`, bias],
  ];
}
