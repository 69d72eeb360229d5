import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { EPSILON, readGradients, SliceGradients, type GradientSource, type Slice, type SliceStats } from './slice-gradients.js';

/** Dice's smoothing terms (MONAI's defaults): an empty prediction of an empty class scores 1, not 0/0. */
const SMOOTH = 1e-5;

/**
 * The training loss of a segmentation model for each image: soft Dice over the foreground classes the image has (1 −
 * their mean Dice, from the softmax probabilities) plus the mean per-pixel cross-entropy, the combination nnU-Net
 * trains with. A sum over images, so a batch split into slices has the sum of the slices' gradients as its gradient,
 * as for classification.
 *
 * `logProbs`, the log-softmax of the head's logits, is what training passes: the cross-entropy then has the gradient
 * (p − truth) at every logit however saturated the softmax is. From the probabilities alone (evaluation, which needs
 * no gradient) the log is of the probabilities clipped to [EPSILON, 1 − EPSILON], and a pixel whose softmax has
 * underflowed past the clip gets no gradient at all: a model pushed there in one large step (activations that grew
 * until every lesion probability was exactly 0) never came back, and scored Dice 0 for the rest of its training.
 */
export function segmentationLoss(
  probs: tf.Tensor4D,
  masks: tf.Tensor3D,
  classes: number,
  withCrossEntropy = true,
  logProbs?: tf.Tensor4D,
): { perImage: tf.Tensor1D; hardDice: tf.Tensor1D } {
  return tf.tidy(() => {
    const truth = tf.oneHot(masks, classes) as tf.Tensor4D;
    // Every pixel weighs the same in the cross-entropy. Balanced per class instead, a lesion pixel weighed a hundred
    // times a background pixel or more, so the optimum called a pixel lesion wherever its chance was above about 1%:
    // models over-segmented (held-out precision 0.1 to 0.6, false positives on nearly every image without a lesion)
    // and the loss swung with each batch's lesion sizes. What the balance was added against, a small lesion outvoted
    // until the softmax saturated to background for good, came from the clipped log's zero gradient (see logProbs)
    // and from a head starting at 1/classes everywhere (unetParameters now starts it at the background prior); the
    // soft Dice term gives the foreground its weight, whatever its size.
    const logLikelihood = tf.sum(tf.mul(truth, logProbs ?? tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON))), [1, 2, 3]) as tf.Tensor1D;
    const crossEntropy = tf.neg(tf.div(logLikelihood, (probs.shape[1] as number) * (probs.shape[2] as number)));
    const foreground = (t: tf.Tensor2D): tf.Tensor2D => tf.slice(t, [0, 1], [-1, classes - 1]);
    const dice = (p: tf.Tensor4D): tf.Tensor1D => {
      const overlap = tf.sum(tf.mul(p, truth), [1, 2]) as tf.Tensor2D;
      const sizes = tf.add(tf.sum(p, [1, 2]), tf.sum(truth, [1, 2])) as tf.Tensor2D;
      return tf.mean(foreground(tf.div(tf.add(tf.mul(overlap, 2), SMOOTH), tf.add(sizes, SMOOTH)) as tf.Tensor2D), 1) as tf.Tensor1D;
    };
    // The soft Dice term counts only the foreground classes an image has: on an image without any, a Dice of an empty
    // truth punishes every stray probability as hard as a missed lesion and pushes the whole model to background.
    const present = tf.cast(tf.greater(foreground(tf.sum(truth, [1, 2]) as tf.Tensor2D), 0), 'float32') as tf.Tensor2D;
    const overlapSoft = tf.sum(tf.mul(probs, truth), [1, 2]) as tf.Tensor2D;
    const sizesSoft = tf.add(tf.sum(probs, [1, 2]), tf.sum(truth, [1, 2])) as tf.Tensor2D;
    const softDice = foreground(tf.div(tf.add(tf.mul(overlapSoft, 2), SMOOTH), tf.add(sizesSoft, SMOOTH)) as tf.Tensor2D);
    const diceLoss = tf.div(tf.sum(tf.mul(present, tf.sub(1, softDice)), 1), tf.maximum(tf.sum(present, 1), 1));
    const perImage = (withCrossEntropy ? tf.add(diceLoss, crossEntropy) : diceLoss) as tf.Tensor1D;
    // The figure a person reads: Dice of the arg-max labels, per image, averaged over the foreground classes.
    const hard = tf.oneHot(tf.argMax(probs, 3), classes) as tf.Tensor4D;
    return { perImage, hardDice: dice(hard) };
  });
}

/**
 * The gradient of a slice's summed segmentation loss (segmentationLoss) for a U-Net's weights, in the flat layout.
 * Reported figures: the summed loss, and as `correct` the summed per-image hard Dice, so "accuracy" (correct over
 * images) is the mean Dice.
 */
export class SegmentationSliceGradients implements GradientSource {
  private readonly plain: SliceGradients;
  /** The model up to the head's input: the head's logits are computed here, so the loss can take their log-softmax. */
  private readonly features: tfl.LayersModel;
  /** The head's 1x1 kernel and bias, the same variables the model applies. */
  private readonly head: { kernel: tf.Variable; bias: tf.Variable };
  readonly size: number;

  constructor(
    private readonly model: tfl.LayersModel,
    private readonly classes: number,
    /** Soft Dice plus cross-entropy (true) or soft Dice alone. */
    private readonly crossEntropy = true,
  ) {
    // Reuses the plain source's weight handling (variables, flat layout, setWeights).
    this.plain = new SliceGradients(model, classes);
    this.size = this.plain.size;
    const last = model.layers[model.layers.length - 1];
    const config = last?.getConfig() ?? {};
    const ones = (v: unknown): boolean => (Array.isArray(v) ? v : [v]).every((x) => x === 1);
    if (!last || config['activation'] !== 'softmax' || !ones(config['kernelSize']) || !ones(config['strides']) || !ones(config['dilationRate']) || last.weights.length !== 2) {
      throw new Error(`model '${model.name}' does not end in a 1x1 softmax convolution with a bias, as a segmentation head does`);
    }
    this.features = tfl.model({ inputs: model.inputs, outputs: last.input as tfl.SymbolicTensor });
    const [kernel, bias] = last.weights.map((w) => w.read() as tf.Variable) as [tf.Variable, tf.Variable];
    this.head = { kernel, bias };
  }

  setWeights(flat: Float32Array): void {
    this.plain.setWeights(flat);
  }

  compute(slice: Slice, out: Float32Array): SliceStats {
    if (out.length !== this.size) throw new RangeError(`gradient vector has ${out.length} values, the model ${this.size}`);
    const masks = slice.masks;
    if (!masks || masks.length !== slice.count * slice.height * slice.width) {
      throw new RangeError(`a segmentation slice of ${slice.count} images needs ${slice.count * slice.height * slice.width} mask values, got ${masks?.length ?? 0}`);
    }
    const xs = tf.tensor4d(slice.pixels, [slice.count, slice.height, slice.width, slice.channels], 'float32');
    const ys = tf.tensor3d(Int32Array.from(masks), [slice.count, slice.height, slice.width], 'int32');
    let stats: tf.Tensor | undefined;
    try {
      const variables = this.model.weights.map((w) => w.read() as tf.Variable);
      const { value, grads } = tf.variableGrads(() => {
        const features = this.features.apply(xs, { training: true }) as tf.Tensor4D;
        const logits = tf.add(tf.conv2d(features, this.head.kernel as tf.Tensor4D, 1, 'same'), this.head.bias) as tf.Tensor4D;
        const probs = tf.softmax(logits) as tf.Tensor4D;
        const { perImage, hardDice } = segmentationLoss(probs, ys, this.classes, this.crossEntropy, tf.logSoftmax(logits) as tf.Tensor4D);
        const nonFinite = tf.sum(tf.cast(tf.logicalNot(tf.isFinite(probs)), 'float32'));
        stats = tf.keep(tf.stack([tf.sum(perImage), tf.sum(hardDice), nonFinite]));
        return tf.sum(perImage) as tf.Scalar;
      }, variables);
      value.dispose();
      readGradients(variables, grads, out);
      const [loss = NaN, correct = 0, nonFinite = 0] = (stats as unknown as tf.Tensor).dataSync();
      return { loss, correct, nonFinite, clipped: 0 };
    } finally {
      stats?.dispose();
      xs.dispose();
      ys.dispose();
    }
  }
}
