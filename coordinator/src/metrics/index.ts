export { CoordinatorMetrics, type RoundOutcome, type RoundPhase } from './coordinator-metrics.js';
export { MetricsController } from './metrics.controller.js';
