import { coarsenEvaluationCounts, federation, metricsFromCounts, type EvaluationCounts } from '@federa/shared';
import type { SitePolicy } from '../config/index.js';

/**
 * What `policy.shareMetrics` lets leave, message by message (the README's table is this file in words). The
 * encrypted update always leaves; it is what the site joined the study for.
 */

/** Train and validation metrics: none withholds them, aggregate drops the sample count, full keeps it. */
export function shareMetricsReport(report: federation.MetricsReport, policy: SitePolicy): federation.MetricsReport | null {
  if (policy.shareMetrics === 'none') return null;
  if (policy.shareMetrics === 'aggregate') {
    const { samples: _samples, ...rest } = report;
    return rest;
  }
  return report;
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
    const figures: federation.EvaluationFigures = {};
    for (const [name, value] of Object.entries({ accuracy, balancedAccuracy, sensitivity, specificity, f1, auc })) {
      if (value !== null) figures[name as keyof federation.EvaluationFigures] = value;
    }
    return { ...base, bins: counts.bins, confusion: [], positives: [], negatives: [], figures };
  }
  const coarse = coarsenEvaluationCounts(counts, policy.minCountPerBin);
  return { ...base, bins: coarse.bins, confusion: coarse.confusion, positives: coarse.positives, negatives: coarse.negatives };
}
