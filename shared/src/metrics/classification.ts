import { z } from 'zod';

/**
 * Classification metrics that can be computed at each site and combined across sites from counts alone: a
 * confusion matrix and, for ROC AUC, per-class histograms of the model's scores. No per-image score, label or
 * identifier ever needs to leave a site to get consortium-wide figures.
 */

/** Score bins per class for the mergeable ROC AUC; monotone in the score, so only within-bin ties are lost. */
export const DEFAULT_SCORE_BINS = 1024;
/** Logit range the bins cover; softmax outputs clipped to [1e-7, 1 - 1e-7] (Keras' epsilon) stay inside it. */
const LOGIT_LIMIT = 16.2;
const PROBABILITY_EPSILON = 1e-7;

/**
 * What one site (or the sum of several) contributes to an evaluation. `confusion[t * classes + p]` counts images of
 * true class t predicted as p. `positives[c * bins + b]` counts images of class c whose score for class c fell in bin
 * b; `negatives` the same for images of any other class (one-vs-rest).
 */
export interface EvaluationCounts {
  classes: number;
  bins: number;
  confusion: number[];
  positives: number[];
  negatives: number[];
}

/** Figures reported per site and overall; null where the data cannot define them (e.g. a class with no images). */
export interface ClassificationMetrics {
  samples: number;
  accuracy: number | null;
  /** Mean recall over the classes present. */
  balancedAccuracy: number | null;
  /** Binary: recall of the positive class (index 1). Multi-class: macro average over classes present, one-vs-rest. */
  sensitivity: number | null;
  /** Binary: recall of the negative class (index 0). Multi-class: macro one-vs-rest average. */
  specificity: number | null;
  /** Binary: F1 of the positive class. Multi-class: macro F1 over classes present. */
  f1: number | null;
  /** Binary: ROC AUC of the positive-class score. Multi-class: macro one-vs-rest AUC over classes present. */
  auc: number | null;
}

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Validates counts received from elsewhere (a site's report): shapes must agree with `classes` and `bins`. */
export const evaluationCountsSchema = z
  .object({
    classes: z.number().int().min(2).max(1000),
    bins: z.number().int().min(2).max(65_536),
    confusion: z.array(count),
    positives: z.array(count),
    negatives: z.array(count),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.confusion.length !== c.classes * c.classes) {
      ctx.addIssue({ code: 'custom', path: ['confusion'], message: `has ${c.confusion.length} cells, expected classes² = ${c.classes * c.classes}` });
    }
    for (const key of ['positives', 'negatives'] as const) {
      if (c[key].length !== c.classes * c.bins) {
        ctx.addIssue({ code: 'custom', path: [key], message: `has ${c[key].length} cells, expected classes x bins = ${c.classes * c.bins}` });
      }
    }
    const images = c.confusion.reduce((a, b) => a + b, 0);
    for (const key of ['positives', 'negatives'] as const) {
      for (let k = 0; k < c.classes && c[key].length === c.classes * c.bins; k++) {
        const inClass = c[key].slice(k * c.bins, (k + 1) * c.bins).reduce((a, b) => a + b, 0);
        const expected = key === 'positives' ? rowSum(c.confusion, c.classes, k) : images - rowSum(c.confusion, c.classes, k);
        if (inClass !== expected) {
          ctx.addIssue({ code: 'custom', path: [key], message: `class ${k} histogram holds ${inClass} images but the confusion matrix says ${expected}` });
        }
      }
    }
  });

function rowSum(confusion: readonly number[], classes: number, row: number): number {
  let sum = 0;
  for (let p = 0; p < classes; p++) sum += confusion[row * classes + p] ?? 0;
  return sum;
}

/** The bin a probability falls in: uniform in logit, so scores near 0 and 1 (where softmax lives) stay apart. */
export function scoreBin(probability: number, bins: number): number {
  const p = Math.min(1 - PROBABILITY_EPSILON, Math.max(PROBABILITY_EPSILON, Number.isFinite(probability) ? probability : 0));
  const logit = Math.log(p / (1 - p));
  return Math.min(bins - 1, Math.max(0, Math.floor(((logit + LOGIT_LIMIT) / (2 * LOGIT_LIMIT)) * bins)));
}

/**
 * Counts for one set of predictions. `probabilities` is row-major [samples x classes] (softmax output), `labels`
 * the true class per sample; the predicted class is the arg-max (first on ties, as tf.argMax).
 */
export function evaluationCounts(
  probabilities: ArrayLike<number>,
  labels: ArrayLike<number>,
  classes: number,
  bins = DEFAULT_SCORE_BINS,
): EvaluationCounts {
  if (!Number.isInteger(classes) || classes < 2) throw new RangeError(`classes must be an integer >= 2, got ${classes}`);
  if (probabilities.length !== labels.length * classes) {
    throw new RangeError(`probabilities has ${probabilities.length} values, expected labels (${labels.length}) x classes (${classes})`);
  }
  const out = emptyEvaluationCounts(classes, bins);
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] ?? -1;
    if (!Number.isInteger(label) || label < 0 || label >= classes) throw new RangeError(`label ${i} is ${label}, not in [0, ${classes})`);
    let predicted = 0;
    for (let c = 1; c < classes; c++) if ((probabilities[i * classes + c] ?? 0) > (probabilities[i * classes + predicted] ?? 0)) predicted = c;
    out.confusion[label * classes + predicted]! += 1;
    for (let c = 0; c < classes; c++) {
      const histogram = c === label ? out.positives : out.negatives;
      histogram[c * bins + scoreBin(probabilities[i * classes + c] ?? 0, bins)]! += 1;
    }
  }
  return out;
}

export function emptyEvaluationCounts(classes: number, bins = DEFAULT_SCORE_BINS): EvaluationCounts {
  return {
    classes,
    bins,
    confusion: new Array<number>(classes * classes).fill(0),
    positives: new Array<number>(classes * bins).fill(0),
    negatives: new Array<number>(classes * bins).fill(0),
  };
}

/** Element-wise sum: the consortium's counts are the sum of the sites' counts. */
export function mergeEvaluationCounts(parts: readonly EvaluationCounts[]): EvaluationCounts {
  const first = parts[0];
  if (first === undefined) throw new RangeError('mergeEvaluationCounts needs at least one part');
  const out = emptyEvaluationCounts(first.classes, first.bins);
  for (const part of parts) {
    if (part.classes !== first.classes || part.bins !== first.bins) {
      throw new RangeError(`cannot merge counts for ${part.classes} classes / ${part.bins} bins with ${first.classes} / ${first.bins}`);
    }
    for (const key of ['confusion', 'positives', 'negatives'] as const) {
      part[key].forEach((v, i) => (out[key][i]! += v));
    }
  }
  return out;
}

/** Metrics from counts; AUC from the score histograms (ties within a bin count one half, as Mann-Whitney does). */
export function metricsFromCounts(counts: EvaluationCounts): ClassificationMetrics {
  const { classes, bins } = counts;
  const aucs: (number | null)[] = [];
  for (let c = 0; c < classes; c++) {
    aucs.push(histogramAuc(counts.positives.slice(c * bins, (c + 1) * bins), counts.negatives.slice(c * bins, (c + 1) * bins)));
  }
  return metricsFromConfusion(counts.confusion, classes, classes === 2 ? (aucs[1] ?? null) : mean(aucs));
}

/**
 * Metrics from one set of predictions with the exact AUC (Mann-Whitney U over the scores, ties counted one half),
 * for where all scores are at hand (a single site, a benchmark).
 */
export function metricsFromScores(probabilities: ArrayLike<number>, labels: ArrayLike<number>, classes: number): ClassificationMetrics {
  const counts = evaluationCounts(probabilities, labels, classes, 2);
  const aucs: (number | null)[] = [];
  for (let c = 0; c < classes; c++) {
    const scores = Array.from({ length: labels.length }, (_, i) => probabilities[i * classes + c] ?? 0);
    aucs.push(rocAuc(scores, Array.from(labels, (l) => l === c)));
  }
  return metricsFromConfusion(counts.confusion, classes, classes === 2 ? (aucs[1] ?? null) : mean(aucs));
}

/** Exact ROC AUC: the probability that a random positive scores above a random negative (ties one half). */
export function rocAuc(scores: readonly number[], positive: readonly boolean[]): number | null {
  if (scores.length !== positive.length) throw new RangeError(`rocAuc: ${scores.length} scores but ${positive.length} labels`);
  const order = scores.map((s, i) => [s, i] as const).sort((a, b) => a[0] - b[0]);
  let positives = 0;
  let rankSum = 0;
  for (let start = 0; start < order.length; ) {
    let end = start;
    while (end < order.length && order[end]![0] === order[start]![0]) end++;
    // Tied scores share the mean of their 1-based ranks.
    const rank = (start + 1 + end) / 2;
    for (let k = start; k < end; k++) {
      if (positive[order[k]![1]]) {
        positives++;
        rankSum += rank;
      }
    }
    start = end;
  }
  const negatives = scores.length - positives;
  if (positives === 0 || negatives === 0) return null;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** ROC AUC from two score histograms over the same ascending bins. */
export function histogramAuc(positives: readonly number[], negatives: readonly number[]): number | null {
  const p = positives.reduce((a, b) => a + b, 0);
  const n = negatives.reduce((a, b) => a + b, 0);
  if (p === 0 || n === 0) return null;
  let below = 0;
  let pairs = 0;
  for (let b = 0; b < positives.length; b++) {
    const neg = negatives[b] ?? 0;
    pairs += (positives[b] ?? 0) * (below + neg / 2);
    below += neg;
  }
  return pairs / (p * n);
}

function metricsFromConfusion(confusion: readonly number[], classes: number, auc: number | null): ClassificationMetrics {
  const at = (t: number, p: number): number => confusion[t * classes + p] ?? 0;
  const samples = confusion.reduce((a, b) => a + b, 0);
  let correct = 0;
  for (let c = 0; c < classes; c++) correct += at(c, c);
  const recall: (number | null)[] = [];
  const specificity: (number | null)[] = [];
  const f1: (number | null)[] = [];
  for (let c = 0; c < classes; c++) {
    const tp = at(c, c);
    const actual = rowSum(confusion, classes, c);
    let predicted = 0;
    for (let t = 0; t < classes; t++) predicted += at(t, c);
    const fn = actual - tp;
    const fp = predicted - tp;
    const tn = samples - tp - fn - fp;
    recall.push(actual > 0 ? tp / actual : null);
    specificity.push(tn + fp > 0 ? tn / (tn + fp) : null);
    f1.push(actual > 0 ? (2 * tp) / (2 * tp + fp + fn) : null);
  }
  const binary = classes === 2;
  return {
    samples,
    accuracy: samples > 0 ? correct / samples : null,
    balancedAccuracy: mean(recall),
    sensitivity: binary ? (recall[1] ?? null) : mean(recall),
    specificity: binary ? (recall[0] ?? null) : mean(specificity.filter((_, c) => recall[c] !== null)),
    f1: binary ? (f1[1] ?? null) : mean(f1),
    auc,
  };
}

function mean(values: readonly (number | null)[]): number | null {
  const defined = values.filter((v): v is number => v !== null);
  return defined.length > 0 ? defined.reduce((a, b) => a + b, 0) / defined.length : null;
}
