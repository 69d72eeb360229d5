import { backend_util, MaxPoolGrad, type KernelConfig, type KernelFunc, type MaxPoolGradAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmHeapBackend } from './wasm-scratch.js';

/**
 * MaxPoolGrad for the tfjs 'wasm' backend, written in JavaScript on the backend's memory. The backend's own kernel
 * is a C++ loop that, for every input position, scans every window that could hold it (a third of a small-cnn
 * training step); this one visits each window once: it finds the window's first maximum (strict >, rows then
 * columns, as the cpu backend's maxPoolPositions does, so ties and NaN go the same way) and adds the window's
 * gradient there. Overlapping windows add up, as in the reference.
 */

export function maxPoolGradKernel(backendName: string): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]): TensorInfo => {
    const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
    const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as MaxPoolGradAttrs;
    const wasm = backend as unknown as WasmHeapBackend;
    const info = backend_util.computePool2DInfo(input.shape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode);
    const dx = wasm.makeOutput(input.shape, 'float32');
    // Views taken after the output is allocated: an allocation may grow the heap and detach older views.
    const x = wasm.typedArrayFromHeap(input) as Float32Array;
    const g = wasm.typedArrayFromHeap(dy) as Float32Array;
    const out = wasm.typedArrayFromHeap(dx) as Float32Array;
    scatterMaxGradient(info, x, g, out);
    return dx;
  };
  return { kernelName: MaxPoolGrad, backendName, kernelFunc };
}

/**
 * dx = the sum, at each window's first maximum, of the window's dy. Where windows overlap, an input can receive
 * several terms: they are added in float64 and rounded once, as the cpu backend does, so the result is its bit for bit.
 */
export function scatterMaxGradient(info: backend_util.Conv2DInfo, x: Float32Array, dy: Float32Array, dx: Float32Array): void {
  const { batchSize, inChannels: channels, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { effectiveFilterHeight, effectiveFilterWidth } = info;
  const { top: padTop, left: padLeft } = info.padInfo;
  if (effectiveFilterHeight === 2 && effectiveFilterWidth === 2 && strideHeight === 2 && strideWidth === 2 && padTop === 0 && padLeft === 0 && dilationHeight === 1 && dilationWidth === 1) {
    scatterMaxGradient2x2(info, x, dy, dx);
    return;
  }
  const overlapping = strideHeight < effectiveFilterHeight || strideWidth < effectiveFilterWidth;
  const sums: Float32Array | Float64Array = overlapping ? new Float64Array(dx.length) : dx;
  sums.fill(0);
  const best = new Float64Array(channels);
  const at = new Int32Array(channels);
  for (let b = 0; b < batchSize; b++) {
    for (let yR = 0; yR < outHeight; yR++) {
      const rCorner = yR * strideHeight - padTop;
      let rMin = rCorner;
      while (rMin < 0) rMin += dilationHeight;
      const rMax = Math.min(inHeight, effectiveFilterHeight + rCorner);
      for (let yC = 0; yC < outWidth; yC++) {
        const cCorner = yC * strideWidth - padLeft;
        let cMin = cCorner;
        while (cMin < 0) cMin += dilationWidth;
        const cMax = Math.min(inWidth, effectiveFilterWidth + cCorner);
        best.fill(Number.NEGATIVE_INFINITY);
        at.fill(-1);
        for (let r = rMin; r < rMax; r += dilationHeight) {
          for (let c = cMin; c < cMax; c += dilationWidth) {
            const base = ((b * inHeight + r) * inWidth + c) * channels;
            for (let d = 0; d < channels; d++) {
              const v = x[base + d] as number;
              if (v > (best[d] as number)) {
                best[d] = v;
                at[d] = base + d;
              }
            }
          }
        }
        const outBase = ((b * outHeight + yR) * outWidth + yC) * channels;
        for (let d = 0; d < channels; d++) {
          const position = at[d] as number;
          if (position >= 0) sums[position] = (sums[position] as number) + (dy[outBase + d] as number);
        }
      }
    }
  }
  if (overlapping) dx.set(sums);
}

/**
 * The common case (small-cnn's pooling): 2x2 windows, stride 2, no padding, so no input is in two windows. The same
 * choice as the general loop (the first of the four in row order that is greater than all before it, none when
 * none is greater than -Infinity), without its per-window bookkeeping.
 */
function scatterMaxGradient2x2(info: backend_util.Conv2DInfo, x: Float32Array, dy: Float32Array, dx: Float32Array): void {
  const { batchSize, inChannels: channels, inHeight, inWidth, outHeight, outWidth } = info;
  dx.fill(0);
  const rowStride = inWidth * channels;
  let g = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let yR = 0; yR < outHeight; yR++) {
      for (let yC = 0; yC < outWidth; yC++) {
        const p0 = ((b * inHeight + 2 * yR) * inWidth + 2 * yC) * channels;
        for (let d = 0; d < channels; d++, g++) {
          const a = p0 + d;
          let at = -1;
          let best = Number.NEGATIVE_INFINITY;
          const v0 = x[a] as number;
          if (v0 > best) {
            best = v0;
            at = a;
          }
          const v1 = x[a + channels] as number;
          if (v1 > best) {
            best = v1;
            at = a + channels;
          }
          const v2 = x[a + rowStride] as number;
          if (v2 > best) {
            best = v2;
            at = a + rowStride;
          }
          if ((x[a + rowStride + channels] as number) > best) at = a + rowStride + channels;
          if (at >= 0) dx[at] = dy[g] as number;
        }
      }
    }
  }
}
