import {
  coarsenHistogram,
  coarsenEvaluationCounts,
  federation,
  metricsFromCounts,
  segmentationMetricsFromCounts,
  type EvaluationCounts,
  type SegmentationCounts,
} from '@federa/shared';
import type { SitePolicy } from '../config/index.js';

/**
 * What `policy.shareMetrics` lets leave, message by message (the README's table is this file in words). The
 * encrypted update always leaves; it is what the site joined the study for.
 */

/**
 * A rate shared without its count is rounded to two decimals: an exact float correct/n gives n away (a continued
 * fraction recovers the denominator).
 */
export function roundedRate(value: number): number {
  return Math.round(value * 100) / 100;
}

/**
 * Train and validation metrics: none withholds them; aggregate drops the sample count, rounds accuracy to two
 * decimals, loss to four significant digits and the privacy spent up to two; full sends them as they are, with the
 * count.
 */
export function shareMetricsReport(report: federation.MetricsReport, policy: SitePolicy): federation.MetricsReport | null {
  if (policy.shareMetrics === 'none') return null;
  if (policy.shareMetrics === 'aggregate') {
    const { samples: _samples, ...rest } = report;
    return {
      ...rest,
      accuracy: roundedRate(report.accuracy),
      loss: Number(report.loss.toPrecision(4)),
      // Under sample-level DP epsilon follows from the data size, so it goes coarsened, rounded up (never understated).
      ...(report.privacyEpsilon !== undefined ? { privacyEpsilon: roundUp(report.privacyEpsilon, 2) } : {}),
    };
  }
  return report;
}

/** `value` rounded up to `digits` significant figures. */
function roundUp(value: number, digits: number): number {
  if (value <= 0 || !Number.isFinite(value)) return value;
  const unit = 10 ** (Math.floor(Math.log10(value)) - digits + 1);
  return Number((Math.ceil(value / unit) * unit).toPrecision(digits));
}

/** The dataset summary is nothing but counts by category: only under full. */
export function shareDatasetSummary(summary: federation.DatasetSummary, policy: SitePolicy): federation.DatasetSummary | null {
  return policy.shareMetrics === 'full' ? summary : null;
}

/**
 * An evaluation: under full the counts, with score histograms coarsened to policy.minCountPerBin images per
 * non-empty bin; under aggregate only the figures computed here; under none nothing (the caller refuses the task).
 */
export function shareEvaluation(
  counts: EvaluationCounts,
  base: Pick<federation.EvaluationReport, 'studyId' | 'round' | 'classNames' | 'backend' | 'seconds'>,
  policy: SitePolicy,
): federation.EvaluationReport | null {
  if (policy.shareMetrics === 'none') return null;
  if (policy.shareMetrics === 'aggregate') {
    const { accuracy, balancedAccuracy, sensitivity, specificity, f1, auc } = metricsFromCounts(counts);
    // Figures from fewer than minCountPerBin images are withheld: the per-class ones when any class is that small,
    // accuracy too when the whole split is.
    const perClass = Array.from({ length: counts.classes }, (_, c) => counts.confusion.slice(c * counts.classes, (c + 1) * counts.classes).reduce((a, b) => a + b, 0));
    const total = perClass.reduce((a, b) => a + b, 0);
    const classesBigEnough = perClass.every((n) => n === 0 || n >= policy.minCountPerBin);
    const shared: Partial<Record<keyof federation.EvaluationFigures, number | null>> =
      total >= policy.minCountPerBin ? { accuracy, ...(classesBigEnough ? { balancedAccuracy, sensitivity, specificity, f1, auc } : {}) } : {};
    const figures: federation.EvaluationFigures = {};
    for (const [name, value] of Object.entries(shared) as Array<[keyof federation.EvaluationFigures, number | null | undefined]>) {
      if (typeof value === 'number') figures[name] = roundedRate(value);
    }
    return { ...base, bins: counts.bins, confusion: [], positives: [], negatives: [], figures };
  }
  const coarse = coarsenEvaluationCounts(counts, policy.minCountPerBin);
  return { ...base, bins: coarse.bins, confusion: coarse.confusion, positives: coarse.positives, negatives: coarse.negatives };
}

/**
 * A segmentation evaluation: under full the pixel counts per class (sums over the held-out images, nothing per image)
 * and the Dice histograms coarsened to policy.minCountPerBin images per non-empty bin; under aggregate only the mean
 * Dice, IoU, sensitivity and precision computed here, and only from at least minCountPerBin images; under none
 * nothing (the caller refuses the task).
 */
export function shareSegmentationEvaluation(
  counts: SegmentationCounts,
  base: Pick<federation.EvaluationReport, 'studyId' | 'round' | 'classNames' | 'backend' | 'seconds'>,
  policy: SitePolicy,
): federation.EvaluationReport | null {
  if (policy.shareMetrics === 'none') return null;
  const empty = { bins: 0, confusion: [], positives: [], negatives: [] };
  if (policy.shareMetrics === 'aggregate') {
    const figures: federation.SegmentationFigures = {};
    if (counts.images >= policy.minCountPerBin) {
      const { mean } = segmentationMetricsFromCounts(counts);
      for (const key of ['dice', 'iou', 'sensitivity', 'precision'] as const) {
        const value = mean[key];
        if (value !== null) figures[key] = roundedRate(value);
      }
    }
    return { ...base, ...empty, segmentation: { images: 0, truePositives: [], falsePositives: [], falseNegatives: [], diceBins: counts.bins, diceHistogram: [], figures } };
  }
  const histogram: number[] = [];
  for (let c = 0; c < counts.classes - 1; c++) histogram.push(...coarsenHistogram(counts.diceHistogram.slice(c * counts.bins, (c + 1) * counts.bins), policy.minCountPerBin));
  return {
    ...base,
    ...empty,
    segmentation: {
      images: counts.images,
      truePositives: [...counts.tp],
      falsePositives: [...counts.fp],
      falseNegatives: [...counts.fn],
      diceBins: counts.bins,
      diceHistogram: histogram,
    },
  };
}
