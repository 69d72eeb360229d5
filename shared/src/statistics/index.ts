export {
  decodeConsortiumStatistics,
  encodeSiteStatistics,
  histogramQuantile,
  statisticsPlanSchema,
  statisticsVectorLength,
  type FeatureStatistics,
  type StatisticsPlan,
} from './federated-statistics.js';
