import { Sum, util, type KernelConfig, type KernelFunc, type SumAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmHeapBackend } from './wasm-scratch.js';

/**
 * Sum for the tfjs 'wasm' backend, faster where training needs it: a bias's gradient is the sum of a convolution's
 * output gradient over every axis but the channels ([N, H, W, C] -> [C]). The native kernel moves those axes last
 * (a full transpose) before reducing; here one pass over the backend's memory adds each row into float64 channel
 * totals, rounded once (16x64x64x16 in a training step: about 1 ms against 8.7). A matrix product with a row of
 * ones looked faster on a repeated input, but XNNPACK repacks the (new, tall) operand on every call in training.
 * Every other reduction goes to the native kernel.
 */
export function fastSumKernel(native: KernelConfig): KernelConfig {
  const kernelFunc = (params: Parameters<KernelFunc>[0]): TensorInfo | TensorInfo[] => {
    const x = params.inputs['x'];
    const { axis, keepDims } = (params.attrs ?? {}) as unknown as SumAttrs;
    if (!x || x.dtype !== 'float32' || x.shape.length < 2) return native.kernelFunc(params);
    const rank = x.shape.length;
    const axes = util.parseAxisParam(axis, x.shape);
    const allButLast = axes.length === rank - 1 && [...axes].sort((a, b) => a - b).every((a, i) => a === i);
    if (!allButLast) return native.kernelFunc(params);
    const channels = x.shape[rank - 1] as number;
    const backend = params.backend as unknown as WasmHeapBackend;
    const out = backend.makeOutput(keepDims ? [...Array.from({ length: rank - 1 }, () => 1), channels] : [channels], 'float32');
    // Views after the output is allocated: an allocation may grow the heap and detach older views.
    const values = backend.typedArrayFromHeap(x) as Float32Array;
    const totals = new Float64Array(channels);
    for (let at = 0; at < values.length; at += channels) {
      for (let c = 0; c < channels; c++) totals[c] = (totals[c] as number) + (values[at + c] as number);
    }
    (backend.typedArrayFromHeap(out) as Float32Array).set(totals);
    return out;
  };
  // The native setupFunc must still run when the backend initialises, for the other reductions.
  return { ...native, kernelName: Sum, kernelFunc };
}
