import {
  backend_util,
  Conv2DBackpropFilter,
  Conv2DBackpropInput,
  getKernel,
  registerKernel,
  unregisterKernel,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropInputAttrs,
  type KernelBackend,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';

/**
 * Training kernels for the tfjs 'wasm' backend, composed from kernels it already has (Conv2D, Transpose, Reverse,
 * Slice) so the arithmetic runs in its XNNPACK convolution rather than in new loops.
 *
 * - Conv2DBackpropFilter: missing from tfjs-backend-wasm 4.22, so no convolution could be trained at all.
 * - Conv2DBackpropInput: present, but a naive loop that took ~45% of a small-cnn training step; for stride 1 it is
 *   replaced by an ordinary convolution with the flipped filter (15x faster) and falls back to the native kernel
 *   otherwise.
 */
const BACKEND = 'wasm';

let registered = false;

/** Registers the kernels once; safe to call again. Returns the kernel names this call registered or replaced. */
export function registerWasmTrainingKernels(): string[] {
  if (registered) return [];
  registered = true;
  const changed: string[] = [];
  // A future tfjs-backend-wasm may ship its own; prefer it then.
  if (!getKernel(Conv2DBackpropFilter, BACKEND)) {
    registerKernel({ kernelName: Conv2DBackpropFilter, backendName: BACKEND, kernelFunc: typedKernel(conv2dBackpropFilter) });
    changed.push(Conv2DBackpropFilter);
  }
  const nativeInput = getKernel(Conv2DBackpropInput, BACKEND);
  if (nativeInput) {
    unregisterKernel(Conv2DBackpropInput, BACKEND);
    registerKernel(fastConv2dBackpropInput(nativeInput));
    changed.push(Conv2DBackpropInput);
  }
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
 * For stride 1, dx[n, i, j, ci] = sum over kh, kw, co of dy[n, i + top - kh, j + left - kw, co] * W[kh, kw, ci, co],
 * i.e. a convolution of dy with W flipped spatially and with in/out channels swapped, padded by (k - 1 - pad).
 * Strided cases would need zero insertion between dy pixels, so they go to the native kernel.
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
    if (info.strideHeight !== 1 || info.strideWidth !== 1) return fallback();
    const [filterHeight, filterWidth] = filterShape;
    const [, inHeight, inWidth] = attrs.inputShape;
    const [, outHeight, outWidth] = dy.shape as [number, number, number, number];
    const top = filterHeight - 1 - info.padInfo.top;
    const left = filterWidth - 1 - info.padInfo.left;
    const bottom = inHeight - outHeight + filterHeight - 1 - top;
    const right = inWidth - outWidth + filterWidth - 1 - left;
    // Explicit paddings wider than the filter would need cropping instead; rare enough to leave to the native kernel.
    if (Math.min(top, left, bottom, right) < 0) return fallback();

    const scratch = new Scratch(backend);
    try {
      const flipped = scratch.run('Reverse', { x: filter }, { dims: [0, 1] });
      const swapped = scratch.run('Transpose', { x: flipped }, { perm: [0, 1, 3, 2] });
      return scratch.keep(
        scratch.run(
          'Conv2D',
          { x: dy, filter: swapped },
          { strides: [1, 1], pad: [[0, 0], [top, bottom], [left, right], [0, 0]], dilations: [1, 1], dataFormat: 'NHWC' },
        ),
      );
    } finally {
      scratch.dispose();
    }
  };
  // The native setupFunc must still run when the backend initialises, for the fallback path.
  return { ...native, kernelFunc };
}

/**
 * Runs other wasm kernels directly (not through the engine, which must not see nested kernel calls) and frees
 * every intermediate output except the one handed back to the engine, also when a kernel throws.
 */
class Scratch {
  private readonly outputs: TensorInfo[] = [];

  constructor(private readonly backend: KernelBackend) {}

  run(kernelName: string, inputs: NamedTensorInfoMap, attrs: object): TensorInfo {
    const kernel = getKernel(kernelName, BACKEND);
    if (!kernel) throw new Error(`wasm kernel '${kernelName}' is not registered; is @tensorflow/tfjs-backend-wasm loaded?`);
    const out = kernel.kernelFunc({ inputs, backend: this.backend, attrs: attrs as NamedAttrMap });
    if (Array.isArray(out)) throw new Error(`wasm kernel '${kernelName}' returned several outputs; expected one`);
    this.outputs.push(out);
    return out;
  }

  keep(result: TensorInfo): TensorInfo {
    const index = this.outputs.indexOf(result);
    if (index >= 0) this.outputs.splice(index, 1);
    return result;
  }

  dispose(): void {
    // Some kernels (e.g. a no-op Transpose) share data with their input and only add a reference, so release
    // through the backend's reference counting rather than assuming each output owns fresh memory.
    for (const out of this.outputs) this.backend.disposeData(out.dataId);
    this.outputs.length = 0;
  }
}

function required(inputs: NamedTensorInfoMap, name: string): TensorInfo {
  const tensor = inputs[name];
  if (!tensor) throw new Error(`kernel input '${name}' is missing`);
  return tensor;
}
