// Class probabilities of a model on labelled images. evaluateModel reports loss and accuracy only; AUC needs the
// scores themselves. Uses the site agent's own model builder, so the forward pass is the one training used.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const train = await import(resolve(root, 'site-agent/dist/train/index.js'));
const shared = await import(resolve(root, 'shared/dist/index.js'));

/** Forward-only batches: small enough to bound memory, large enough to amortise per-call overhead. */
const BATCH = 64;

/** Row-major [count x classes] softmax outputs for `data` under `weights`. */
export async function predictProbabilities(spec, weights, data) {
  // A linear model on image features has no TensorFlow.js graph; the site computes its scores from the features.
  if (shared.isLinearArchitecture(spec.architecture)) return Float32Array.from(await train.predictProbabilities(spec, weights, data));
  await train.initBackend();
  const model = train.buildModel(spec, weights);
  try {
    const perImage = data.height * data.width * data.channels;
    const out = new Float32Array(data.count * spec.classes);
    for (let start = 0; start < data.count; start += BATCH) {
      const n = Math.min(BATCH, data.count - start);
      const probs = tf.tidy(() => {
        const xs = tf.tensor4d(data.images.subarray(start * perImage, (start + n) * perImage), [n, data.height, data.width, data.channels]);
        return model.predict(xs);
      });
      out.set(probs.dataSync(), start * spec.classes);
      probs.dispose();
    }
    return out;
  } finally {
    model.dispose();
  }
}
