export {
  DEFAULT_SCORE_BINS,
  emptyEvaluationCounts,
  evaluationCounts,
  evaluationCountsSchema,
  histogramAuc,
  mergeEvaluationCounts,
  metricsFromCounts,
  metricsFromScores,
  rocAuc,
  scoreBin,
  type ClassificationMetrics,
  type EvaluationCounts,
} from './classification.js';
export { coarsenEvaluationCounts, coarsenHistogram } from './coarsen.js';
export {
  DEFAULT_DICE_BINS,
  emptySegmentationCounts,
  mergeSegmentationCounts,
  segmentationCounts,
  segmentationCountsSchema,
  segmentationMetricsFromCounts,
  type SegmentationClassMetrics,
  type SegmentationCounts,
} from './segmentation.js';
