// The speed of one convolution layer's training arithmetic (forward, input gradient and weight gradient) in Federa's
// wasm backend and in PyTorch, at the layer shapes of the compared models: GFLOP/s of the same 3·2·N·H·W·Cin·Cout·k²
// operations. It says what whole-model ratios can reach: where PyTorch's oneDNN convolutions run at native vector
// width (AVX-512 here) and WebAssembly's SIMD is 128 bits wide, no amount of work outside the kernels closes the gap.
import * as tf from '@tensorflow/tfjs-core';
import { runPytorchJob } from './pytorch.mjs';

/** [batch, size, in channels, out channels]: a 3x3 stride-1 'same' convolution of each width the models train. */
export const CEILING_SHAPES = [
  [16, 64, 1, 16],
  [16, 32, 16, 16],
  [16, 16, 32, 32],
  [16, 8, 64, 64],
];

const flops = ([n, size, ci, co]) => 3 * 2 * n * size * size * ci * co * 9;

/** Federa's rate for each shape on the current tfjs backend (call after initBackend('wasm')). */
export function federaConvRates(shapes = CEILING_SHAPES, repeats = 20) {
  return shapes.map((shape) => {
    const [n, size, ci, co] = shape;
    const x = tf.randomUniform([n, size, size, ci]);
    const w = tf.randomUniform([3, 3, ci, co]);
    const step = tf.grads((a, b) => tf.sum(tf.conv2d(a, b, 1, 'same')));
    const once = () => tf.tidy(() => step([x, w]).forEach((g) => g.dataSync()));
    for (let i = 0; i < 3; i++) once();
    const t0 = performance.now();
    for (let i = 0; i < repeats; i++) once();
    const seconds = (performance.now() - t0) / 1000 / repeats;
    tf.dispose([x, w]);
    return flops(shape) / seconds / 1e9;
  });
}

/** PyTorch's rate for each shape on `threads` threads (bench/lib/pytorch_train.py's convolution probe). */
export function pytorchConvRates(shapes = CEILING_SHAPES, threads = 1) {
  return runPytorchJob({ mode: 'conv-rates', shapes, threads }).gflops;
}
