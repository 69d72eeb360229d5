export {
  decodeConsortiumStatistics,
  DEFAULT_QUANTILES,
  encodeSiteStatistics,
  histogramQuantile,
  MAX_STATISTICS_SLOT,
  statisticsColumnSchema,
  statisticsPlanSchema,
  statisticsVectorLength,
  type FeatureStatistics,
  type StatisticsColumn,
  type StatisticsPlan,
} from './federated-statistics.js';
export {
  intensityFeature,
  isStatisticsRound,
  MODEL_FEATURE_PREFIX,
  modelFeatureStandardize,
  roundPayloadLength,
  studyStatisticsIssues,
  studyStatisticsPlan,
  studyStatisticsSchema,
  type StudyStatistics,
} from './study-statistics.js';
export {
  featureStatisticsViewSchema,
  MAX_STATISTICS_JSON_BYTES,
  parseStatisticsReport,
  statisticsReportJson,
  type FeatureStatisticsView,
} from './statistics-report.js';
