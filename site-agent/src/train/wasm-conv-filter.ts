import { backend_util, type Conv2DBackpropFilterAttrs, type KernelBackend, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { required, Scratch } from './wasm-scratch.js';

/**
 * Conv2DBackpropFilter for the tfjs 'wasm' backend as one matrix product: dW = P · dy, where dy is [M, co]
 * (M = N·outH·outW output positions, as stored) and P is [ci·fh·fw, M], each row the input channel ci shifted by
 * the filter offset (fh, fw) over every output position: the input's patches, transposed ("im2col"). The product
 * runs in the backend's XNNPACK matrix kernel with neither operand transposed, its fast path. P is filled in
 * JavaScript from x transposed to channel-major [ci, N, H, W], so that each row is copied in contiguous runs.
 * The result [ci, fh, fw, co] is transposed to the filter's [fh, fw, ci, co]. tfjs only differentiates conv2d with
 * dilation 1, so the forward dilation never needs handling here.
 */
export function conv2dBackpropFilterIm2col(inputs: NamedTensorInfoMap, backend: KernelBackend, attrs: Conv2DBackpropFilterAttrs): TensorInfo {
  const x = required(inputs, 'x');
  const dy = required(inputs, 'dy');
  if (attrs.dataFormat !== 'NHWC') throw new Error(`wasm Conv2DBackpropFilter supports only NHWC, got ${attrs.dataFormat}`);
  const info = backend_util.computeConv2DInfo(x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  const [batch, inHeight, inWidth, inChannels] = x.shape as [number, number, number, number];
  const [, outHeight, outWidth, outChannels] = dy.shape as [number, number, number, number];
  const [filterHeight, filterWidth] = attrs.filterShape;
  const { strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  const positions = batch * outHeight * outWidth;
  const rows = inChannels * filterHeight * filterWidth;

  const scratch = new Scratch(backend);
  try {
    const channelMajor = scratch.run('Transpose', { x }, { perm: [3, 0, 1, 2] });
    const patches = scratch.allocate([1, rows, positions]);
    // Views after the last allocation: growing the heap detaches earlier ones.
    const src = scratch.view(channelMajor);
    const dst = scratch.view(patches);
    const plane = inHeight * inWidth;
    const geometry: PatchGeometry = { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, top, left };
    for (let ci = 0; ci < inChannels; ci++) {
      for (let fh = 0; fh < filterHeight; fh++) {
        for (let fw = 0; fw < filterWidth; fw++) {
          const row = ((ci * filterHeight + fh) * filterWidth + fw) * positions;
          for (let n = 0; n < batch; n++) copyShiftedPlane(src, (ci * batch + n) * plane, dst, row + n * outHeight * outWidth, geometry, fh, fw);
        }
      }
    }
    const dy3 = scratch.run('Reshape', { x: dy }, { shape: [1, positions, outChannels] });
    const product = scratch.run('BatchMatMul', { a: patches, b: dy3 }, { transposeA: false, transposeB: false });
    const grouped = scratch.run('Reshape', { x: product }, { shape: [inChannels, filterHeight, filterWidth, outChannels] });
    return scratch.keep(scratch.run('Transpose', { x: grouped }, { perm: [1, 2, 0, 3] }));
  } finally {
    scratch.dispose();
  }
}

/** Where a convolution's windows fall on its input: sizes, strides and the padding before the first row and column. */
export interface PatchGeometry {
  inHeight: number;
  inWidth: number;
  outHeight: number;
  outWidth: number;
  strideHeight: number;
  strideWidth: number;
  top: number;
  left: number;
}

/**
 * Writes into dst[at, at + outHeight·outWidth) the value of one input plane under filter offset (fh, fw) at every
 * output position, 0 where the window lies in the padding: one row of the transposed patch matrix. The plane starts
 * at src[plane], its rows inWidth·step apart and neighbouring pixels `step` apart: 1 for a channel-major plane (copied
 * in contiguous runs at stride 1), the channel count for one channel of an NHWC image.
 */
export function copyShiftedPlane(src: Float32Array, plane: number, dst: Float32Array, at: number, g: PatchGeometry, fh: number, fw: number, step = 1): void {
  const { inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth, top, left } = g;
  // Output columns whose input column xo·sw + fw − left lies inside the image: [first, last).
  const first = Math.max(0, Math.ceil((left - fw) / strideWidth));
  const last = Math.min(outWidth, Math.floor((inWidth - 1 + left - fw) / strideWidth) + 1);
  for (let yo = 0; yo < outHeight; yo++, at += outWidth) {
    const r = yo * strideHeight + fh - top;
    if (r < 0 || r >= inHeight || first >= last) {
      dst.fill(0, at, at + outWidth);
      continue;
    }
    if (first > 0) dst.fill(0, at, at + first);
    if (last < outWidth) dst.fill(0, at + last, at + outWidth);
    const row = plane + (r * inWidth + fw - left) * step;
    if (strideWidth === 1 && step === 1) dst.set(src.subarray(row + first, row + last), at + first);
    else {
      const stride = strideWidth * step;
      for (let xo = first; xo < last; xo++) dst[at + xo] = src[row + xo * stride] as number;
    }
  }
}
