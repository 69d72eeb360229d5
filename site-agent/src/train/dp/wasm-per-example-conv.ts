import * as tf from '@tensorflow/tfjs-core';
import { copyShiftedPlane, type PatchGeometry } from '../wasm-conv-filter.js';
import { Scratch } from '../wasm-scratch.js';

/**
 * Each example's kernel gradient of a 'same'-padded convolution on the wasm backend, [N, kh·kw·C·outC] row-major in
 * the kernel's [kh, kw, C, outC] layout: for example i, P_i · dz_i, where P_i [kh·kw·C, positions] is its input under
 * each filter offset (the transposed patch matrix, filled from the NHWC input without a transpose) and dz_i
 * [positions, outC] its gradient for the layer's pre-activation output. One 2-D product per example, because the
 * backend's XNNPACK matrix kernel is its fast path only for a 2-D product with neither operand transposed (18 GFLOP/s
 * here against 3 for a batched or transposed one, which a batched tf.matMul would take).
 */
export function perExampleConvKernelWasm(x: tf.Tensor4D, dz: tf.Tensor4D, kernelSize: number, strides: number, padding: { top: number; left: number }): Float32Array {
  const [n, inHeight, inWidth, channels] = x.shape;
  const [, outHeight, outWidth, outChannels] = dz.shape;
  const positions = outHeight * outWidth;
  const rows = kernelSize * kernelSize * channels;
  const geometry: PatchGeometry = { inHeight, inWidth, outHeight, outWidth, strideHeight: strides, strideWidth: strides, top: padding.top, left: padding.left };
  const input = x.dataSync() as Float32Array;
  const gradient = dz.dataSync() as Float32Array;
  const out = new Float32Array(n * rows * outChannels);
  const imageSize = inHeight * inWidth * channels;
  const scratch = new Scratch(tf.backend());
  try {
    const patches = scratch.allocate([1, rows, positions]);
    for (let i = 0; i < n; i++) {
      // Views after the last allocation: the product of the previous example may have grown the heap.
      const dst = scratch.view(patches);
      for (let kh = 0; kh < kernelSize; kh++) {
        for (let kw = 0; kw < kernelSize; kw++) {
          for (let c = 0; c < channels; c++) {
            copyShiftedPlane(input, i * imageSize + c, dst, ((kh * kernelSize + kw) * channels + c) * positions, geometry, kh, kw, channels);
          }
        }
      }
      // A fresh operand per example: the backend's matrix kernel caches its packed right-hand side by tensor.
      const dzPart = scratch.allocate([1, positions, outChannels]);
      scratch.view(dzPart).set(gradient.subarray(i * positions * outChannels, (i + 1) * positions * outChannels));
      const product = scratch.run('BatchMatMul', { a: patches, b: dzPart }, { transposeA: false, transposeB: false });
      out.set(scratch.view(product), i * rows * outChannels);
      scratch.release(product);
      scratch.release(dzPart);
    }
  } finally {
    scratch.dispose();
  }
  return out;
}
