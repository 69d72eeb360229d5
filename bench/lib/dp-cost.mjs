// What differential privacy costs a round's training: the same local training (one epoch of Adam in batches of 16)
// with DP-SGD (each example's gradient clipped, noise on each batch's sum, Poisson-sampled batches of the same
// expected size) and without, alternated so that machine noise hits both, at 1 and 2 threads. The bar: a DP
// round costs at most 3x a normal one.

/** [model, input size] pairs measured: the demo's model and the deepest one. */
export const DP_COST_MODELS = [
  ['small-cnn', 64],
  ['resnet', 64],
  ['mobilenet', 64],
];

/**
 * Seconds per training without and with DP-SGD for each model and thread count (medians of `repeats`), and their
 * ratio. `train` and `shared` are the site agent's train module and the shared package, already on wasm.
 */
export async function dpCostRows({ train, shared, threadCounts = [1, 2], repeats = 2, images = 128, log = () => {} }) {
  const rows = [];
  for (const [model, size] of DP_COST_MODELS) {
    const spec = shared.parseModelSpec({ architecture: model, inputSize: size, channels: 1, classes: 2, seed: 1 });
    const weights = shared.initialWeights(spec);
    const set = train.brightSquareImages(images, size, 7);
    for (const threads of threadCounts) {
      const plain = { epochs: 1, batchSize: 16, learningRate: 0.001, seed: 2, optimizer: 'adam', threads };
      const private_ = { ...plain, privacy: { clipNorm: 1, noiseMultiplier: 1 } };
      // Untimed: threads started, operators set up for both paths' shapes.
      await train.trainLocal(spec, weights, train.brightSquareImages(32, size, 1), plain);
      await train.trainLocal(spec, weights, train.brightSquareImages(32, size, 1), private_);
      const seconds = { plain: [], dp: [] };
      for (let r = 0; r < repeats; r++) {
        for (const [key, options] of [['plain', plain], ['dp', private_]]) {
          const t0 = performance.now();
          await train.trainLocal(spec, weights, set, options);
          seconds[key].push((performance.now() - t0) / 1000);
        }
      }
      const row = { model, input: size, threads, images, plainSeconds: median(seconds.plain), dpSeconds: median(seconds.dp) };
      row.ratio = row.dpSeconds / row.plainSeconds;
      rows.push({ ...row, samples: seconds });
      log(`DP-SGD ${model} ${size}x${size} ${threads} thread(s): ${row.plainSeconds.toFixed(2)} s plain, ${row.dpSeconds.toFixed(2)} s with DP, ${row.ratio.toFixed(2)}x`);
    }
  }
  return rows;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
