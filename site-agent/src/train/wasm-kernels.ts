import {
  backend_util,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  DepthwiseConv2dNativeBackpropFilter,
  DepthwiseConv2dNativeBackpropInput,
  getKernel,
  MaxPoolGrad,
  registerKernel,
  Sum,
  unregisterKernel,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropInputAttrs,
  type DepthwiseConv2dNativeBackpropFilterAttrs,
  type DepthwiseConv2dNativeBackpropInputAttrs,
  type KernelBackend,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { conv2dBackpropFilterIm2col } from './wasm-conv-filter.js';
import { maxPoolGradKernel } from './wasm-pool-kernels.js';
import { fastSumKernel } from './wasm-sum-kernel.js';
import { required, Scratch } from './wasm-scratch.js';

/**
 * Training kernels for the tfjs 'wasm' backend, composed from kernels it already has (Conv2D,
 * DepthwiseConv2dNative, Transpose, Reverse, Reshape, PadV2, Slice, Tile, Sum) so the arithmetic runs in its
 * XNNPACK convolutions rather than in new loops.
 *
 * - Conv2DBackpropFilter: missing from tfjs-backend-wasm 4.22, so no convolution could be trained at all.
 * - Conv2DBackpropInput: present, but a naive loop that took ~45% of a small-cnn training step; replaced by an
 *   ordinary convolution with the flipped filter (15x faster at stride 1), over the stride-spread gradient for
 *   strided convolutions (about twice as fast as the native loop there, for resnet's downsampling blocks), falling
 *   back to the native kernel only for explicit paddings it cannot express.
 * - DepthwiseConv2dNativeBackpropInput / DepthwiseConv2dNativeBackpropFilter: missing, so no depthwise
 *   convolution (MobileNet) could be trained.
 * - MaxPoolGrad: present, but a third of a small-cnn step; replaced by a one-pass scatter (wasm-pool-kernels.ts).
 * - Conv2DBackpropFilter with few input channels: one matrix product over the input's patches
 *   (wasm-conv-filter.ts).
 * - Sum over every axis but the last (a bias's gradient): one pass adding rows (wasm-sum-kernel.ts).
 */
const BACKEND = 'wasm';
/** Input channels up to which Conv2DBackpropFilter forms the patch matrix (wasm-conv-filter.ts). */
const IM2COL_MAX_CHANNELS = 4;

let registered = false;

/** Registers the kernels once; safe to call again. Returns the kernel names this call registered or replaced. */
export function registerWasmTrainingKernels(): string[] {
  if (registered) return [];
  registered = true;
  const changed: string[] = [];
  // A future tfjs-backend-wasm may ship its own; prefer it then.
  const missing: Array<[string, KernelFunc]> = [
    [Conv2DBackpropFilter, typedKernel(conv2dBackpropFilter)],
    [DepthwiseConv2dNativeBackpropInput, typedKernel(depthwiseConv2dBackpropInput)],
    [DepthwiseConv2dNativeBackpropFilter, typedKernel(depthwiseConv2dBackpropFilter)],
  ];
  for (const [kernelName, kernelFunc] of missing) {
    if (getKernel(kernelName, BACKEND)) continue;
    registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
    changed.push(kernelName);
  }
  const nativeInput = getKernel(Conv2DBackpropInput, BACKEND);
  if (nativeInput) {
    unregisterKernel(Conv2DBackpropInput, BACKEND);
    registerKernel(fastConv2dBackpropInput(nativeInput));
    changed.push(Conv2DBackpropInput);
  }
  const nativeSum = getKernel(Sum, BACKEND);
  if (nativeSum) {
    unregisterKernel(Sum, BACKEND);
    registerKernel(fastSumKernel(nativeSum));
    changed.push(Sum);
  }
  if (getKernel(MaxPoolGrad, BACKEND)) unregisterKernel(MaxPoolGrad, BACKEND);
  registerKernel(maxPoolGradKernel(BACKEND));
  changed.push(MaxPoolGrad);
  return changed;
}

type KernelArgs<A> = { inputs: NamedTensorInfoMap; backend: KernelBackend; attrs: A };
type KernelParams = Parameters<KernelFunc>[0];

/** The registry passes an untyped backend and attribute map; these kernels only ever run on the wasm backend. */
function typedKernel<A>(fn: (args: KernelArgs<A>) => TensorInfo | TensorInfo[]): KernelFunc {
  return (params: KernelParams) =>
    fn({ inputs: params.inputs, backend: params.backend as KernelBackend, attrs: (params.attrs ?? {}) as unknown as A });
}

/**
 * dW[kh, kw, ci, co] = sum over n, y, x of xPadded[n, y*s + kh, x*s + kw, ci] * dy[n, y, x, co].
 * That is a stride-1 convolution of x transposed to [ci, H, W, n] (ci as batch, n as channels) with dy transposed to
 * [h', w', n, co] as the filter, dilated by the forward stride; its output [ci, fh, fw, co] is transposed back.
 * tfjs only differentiates conv2d with dilation 1, so the forward dilation never needs handling here.
 */
function conv2dBackpropFilter({ inputs, backend, attrs }: KernelArgs<Conv2DBackpropFilterAttrs>): TensorInfo {
  const x = required(inputs, 'x');
  const dy = required(inputs, 'dy');
  // Few input channels (a first layer on grey or RGB images): the convolution below has a filter as large as the
  // image and a few outputs, which XNNPACK does poorly; one matrix product over the input's patches is 2.5-5x faster
  // there (measured: 16x64x64x1 -> 16, 3.0 ms against 15), and slower once the patches outgrow the cache.
  if ((x.shape[3] as number) <= IM2COL_MAX_CHANNELS) return conv2dBackpropFilterIm2col(inputs, backend, attrs);
  if (attrs.dataFormat !== 'NHWC') {
    throw new Error(`wasm Conv2DBackpropFilter supports only NHWC, got ${attrs.dataFormat}`);
  }
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  const [filterHeight, filterWidth] = attrs.filterShape;
  const [, inHeight, inWidth] = x.shape as [number, number, number, number];
  const [, outHeight, outWidth] = dy.shape as [number, number, number, number];
  const { top, left } = info.padInfo;
  // Pad the far side only as much as the last window reaches; with 'valid' and a remainder it may reach less than
  // the input, and the extra output rows/columns are sliced off below.
  const bottom = Math.max(0, (outHeight - 1) * info.strideHeight + filterHeight - top - inHeight);
  const right = Math.max(0, (outWidth - 1) * info.strideWidth + filterWidth - left - inWidth);

  const scratch = new Scratch(backend);
  try {
    const xT = scratch.run('Transpose', { x }, { perm: [3, 1, 2, 0] });
    const dyT = scratch.run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] });
    let grad = scratch.run(
      'Conv2D',
      { x: xT, filter: dyT },
      {
        strides: [1, 1],
        pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
        dilations: [info.strideHeight, info.strideWidth],
        dataFormat: 'NHWC',
      },
    );
    if (grad.shape[1] !== filterHeight || grad.shape[2] !== filterWidth) {
      grad = scratch.run('Slice', { x: grad }, { begin: [0, 0, 0, 0], size: [grad.shape[0]!, filterHeight, filterWidth, grad.shape[3]!] });
    }
    return scratch.keep(scratch.run('Transpose', { x: grad }, { perm: [1, 2, 0, 3] }));
  } finally {
    scratch.dispose();
  }
}

/**
 * dx[n, a, b, ci] = sum over i, j, kh, kw, co with i*sh + kh = a + top and j*sw + kw = b + left of
 * dy[n, i, j, co] * W[kh, kw, ci, co]: a stride-1 convolution, with W flipped spatially and its channel axes
 * swapped, of dy spread onto the input grid (see {@link spreadForTransposedConv}).
 */
function fastConv2dBackpropInput(native: KernelConfig): KernelConfig {
  const kernelFunc = (params: KernelParams): TensorInfo | TensorInfo[] => {
    const fallback = (): TensorInfo | TensorInfo[] => native.kernelFunc(params);
    const { inputs, backend, attrs } = {
      inputs: params.inputs,
      backend: params.backend as KernelBackend,
      attrs: (params.attrs ?? {}) as unknown as Conv2DBackpropInputAttrs,
    };
    const dy = required(inputs, 'dy');
    const filter = required(inputs, 'filter');
    const filterShape = filter.shape as [number, number, number, number];
    if (attrs.dataFormat !== 'NHWC') return fallback();
    const info = backend_util.computeConv2DInfo(
      attrs.inputShape,
      filterShape,
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
      false,
      'channelsLast',
    );
    const scratch = new Scratch(backend);
    try {
      const spread = spreadForTransposedConv(scratch, dy, info, attrs.inputShape);
      // Explicit paddings wider than the filter would need cropping the result instead; rare enough to leave to
      // the native kernel.
      if (!spread) return fallback();
      const flipped = scratch.run('Reverse', { x: filter }, { dims: [0, 1] });
      const swapped = scratch.run('Transpose', { x: flipped }, { perm: [0, 1, 3, 2] });
      return scratch.keep(
        scratch.run('Conv2D', { x: spread.x, filter: swapped }, { strides: [1, 1], pad: spread.pad, dilations: [1, 1], dataFormat: 'NHWC' }),
      );
    } finally {
      scratch.dispose();
    }
  };
  // The native setupFunc must still run when the backend initialises, for the fallback path.
  return { ...native, kernelFunc };
}

/**
 * The transposed-convolution trick for strided forward passes: dy [N, h, w, C] gets sh - 1 zero rows after every
 * row and sw - 1 zero columns after every column (a Reshape to [N, h, 1, w, 1, C], a PadV2 and a Reshape back), so
 * that dy[i, j] lands on the input position i*sh, j*sw of the pixel it came from. A stride-1 correlation of that
 * with the spatially flipped filter, padded by (k - 1 - forward padding) at the start and whatever makes the output
 * the input's size at the end, is then the input gradient; the end is cropped when the forward pass never read the
 * input's last rows or columns. Returns undefined when the forward padding exceeds k - 1 (explicit paddings only).
 */
function spreadForTransposedConv(
  scratch: Scratch,
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
  inputShape: readonly [number, number, number, number],
): { x: TensorInfo; pad: [[0, 0], [number, number], [number, number], [0, 0]] } | undefined {
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const [, inHeight, inWidth] = inputShape;
  const [batch, outHeight, outWidth, channels] = dy.shape as [number, number, number, number];
  const top = filterHeight - 1 - info.padInfo.top;
  const left = filterWidth - 1 - info.padInfo.left;
  if (top < 0 || left < 0) return undefined;
  let x = dy;
  let height = outHeight;
  let width = outWidth;
  if (strideHeight > 1 || strideWidth > 1) {
    const split = scratch.run('Reshape', { x }, { shape: [batch, outHeight, 1, outWidth, 1, channels] });
    const padded = scratch.run(
      'PadV2',
      { x: split },
      { paddings: [[0, 0], [0, 0], [0, strideHeight - 1], [0, 0], [0, strideWidth - 1], [0, 0]], constantValue: 0 },
    );
    height = outHeight * strideHeight;
    width = outWidth * strideWidth;
    x = scratch.run('Reshape', { x: padded }, { shape: [batch, height, width, channels] });
  }
  // The correlation reads rows [0, inHeight + k - 1) of the padded, spread gradient.
  const bottom = inHeight + filterHeight - 1 - top - height;
  const right = inWidth + filterWidth - 1 - left - width;
  if (bottom < 0 || right < 0) {
    // Those trailing rows/columns only ever met padding in the forward pass (or are spreading zeros).
    x = scratch.run('Slice', { x }, { begin: [0, 0, 0, 0], size: [batch, height + Math.min(0, bottom), width + Math.min(0, right), channels] });
  }
  return { x, pad: [[0, 0], [top, Math.max(0, bottom)], [left, Math.max(0, right)], [0, 0]] };
}

/**
 * Depthwise input gradient with filter [kh, kw, C, m]: as for Conv2DBackpropInput, but each output channel c*m + q
 * only ever came from input channel c, so it is a depthwise correlation of the spread dy [.., C*m] with the flipped
 * filter viewed as [kh, kw, C*m, 1], followed (for m > 1) by summing the m products that belong to one input channel.
 */
function depthwiseConv2dBackpropInput({ inputs, backend, attrs }: KernelArgs<DepthwiseConv2dNativeBackpropInputAttrs>): TensorInfo {
  const dy = required(inputs, 'dy');
  const filter = required(inputs, 'filter');
  const filterShape = filter.shape as [number, number, number, number];
  assertUndilated(DepthwiseConv2dNativeBackpropInput, attrs.dilations);
  const info = backend_util.computeConv2DInfo(attrs.inputShape, filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, true);
  const [batch, inHeight, inWidth, inChannels] = attrs.inputShape;
  const [filterHeight, filterWidth, , multiplier] = filterShape;
  const scratch = new Scratch(backend);
  try {
    const spread = spreadForTransposedConv(scratch, dy, info, attrs.inputShape);
    if (!spread) {
      throw new Error(`wasm ${DepthwiseConv2dNativeBackpropInput} supports paddings up to the filter size - 1, got ${JSON.stringify(attrs.pad)}`);
    }
    let flipped = scratch.run('Reverse', { x: filter }, { dims: [0, 1] });
    if (multiplier > 1) flipped = scratch.run('Reshape', { x: flipped }, { shape: [filterHeight, filterWidth, inChannels * multiplier, 1] });
    const grad = scratch.run(
      'DepthwiseConv2dNative',
      { x: spread.x, filter: flipped },
      { strides: [1, 1], pad: spread.pad, dilations: [1, 1] },
    );
    if (multiplier === 1) return scratch.keep(grad);
    const perProduct = scratch.run('Reshape', { x: grad }, { shape: [batch, inHeight, inWidth, inChannels, multiplier] });
    return scratch.keep(scratch.run('Sum', { x: perProduct }, { axis: [4], keepDims: false }));
  } finally {
    scratch.dispose();
  }
}

/**
 * Depthwise filter gradient: dW[kh, kw, c, q] = sum over n, y, x of xPadded[n, y*s + kh, x*s + kw, c] *
 * dy[n, y, x, c*m + q]. Per (n, c) pair that is a correlation of one input plane with one gradient plane, i.e. a
 * depthwise convolution of x viewed as one image with N*C channels ([1, H, W, N*C]) by dy viewed as an
 * [h', w', N*C, 1] filter, dilated by the forward stride, whose [1, kh, kw, N*C] output is then summed over n.
 * For m > 1 each input channel is first repeated m times so it pairs with each of its m gradient channels.
 */
function depthwiseConv2dBackpropFilter({ inputs, backend, attrs }: KernelArgs<DepthwiseConv2dNativeBackpropFilterAttrs>): TensorInfo {
  const x = required(inputs, 'x');
  const dy = required(inputs, 'dy');
  assertUndilated(DepthwiseConv2dNativeBackpropFilter, attrs.dilations);
  const xShape = x.shape as [number, number, number, number];
  const info = backend_util.computeConv2DInfo(xShape, attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, true);
  const [filterHeight, filterWidth, inChannels, multiplier] = attrs.filterShape;
  const [batch, inHeight, inWidth] = xShape;
  const [, outHeight, outWidth] = dy.shape as [number, number, number, number];
  const channels = inChannels * multiplier;
  const { top, left } = info.padInfo;
  // As in conv2dBackpropFilter: pad the far side only as far as the last window reaches, slice off any excess.
  const bottom = Math.max(0, (outHeight - 1) * info.strideHeight + filterHeight - top - inHeight);
  const right = Math.max(0, (outWidth - 1) * info.strideWidth + filterWidth - left - inWidth);

  const scratch = new Scratch(backend);
  try {
    let xm = x;
    if (multiplier > 1) {
      const split = scratch.run('Reshape', { x }, { shape: [batch, inHeight, inWidth, inChannels, 1] });
      const tiled = scratch.run('Tile', { x: split }, { reps: [1, 1, 1, 1, multiplier] });
      xm = scratch.run('Reshape', { x: tiled }, { shape: [batch, inHeight, inWidth, channels] });
    }
    const xT = scratch.run('Transpose', { x: xm }, { perm: [1, 2, 0, 3] });
    const image = scratch.run('Reshape', { x: xT }, { shape: [1, inHeight, inWidth, batch * channels] });
    const dyT = scratch.run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] });
    const planes = scratch.run('Reshape', { x: dyT }, { shape: [outHeight, outWidth, batch * channels, 1] });
    let grad = scratch.run(
      'DepthwiseConv2dNative',
      { x: image, filter: planes },
      { strides: [1, 1], pad: [[0, 0], [top, bottom], [left, right], [0, 0]], dilations: [info.strideHeight, info.strideWidth] },
    );
    if (grad.shape[1] !== filterHeight || grad.shape[2] !== filterWidth) {
      grad = scratch.run('Slice', { x: grad }, { begin: [0, 0, 0, 0], size: [1, filterHeight, filterWidth, batch * channels] });
    }
    const perSample = scratch.run('Reshape', { x: grad }, { shape: [filterHeight, filterWidth, batch, channels] });
    const summed = scratch.run('Sum', { x: perSample }, { axis: [2], keepDims: false });
    return scratch.keep(scratch.run('Reshape', { x: summed }, { shape: [filterHeight, filterWidth, inChannels, multiplier] }));
  } finally {
    scratch.dispose();
  }
}

/** tfjs differentiates depthwise convolutions only without dilation; anything else reaching here is a caller bug. */
function assertUndilated(kernelName: string, dilations: [number, number] | number | undefined): void {
  const [h, w] = typeof dilations === 'number' ? [dilations, dilations] : (dilations ?? [1, 1]);
  if (h !== 1 || w !== 1) throw new Error(`wasm ${kernelName} supports only dilation 1, got [${h}, ${w}]`);
}

/**
 * Runs other wasm kernels directly (not through the engine, which must not see nested kernel calls) and frees
 * every intermediate output except the one handed back to the engine, also when a kernel throws.
 */
