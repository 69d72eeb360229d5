export { StudyDecisions, DecisionError, type Decision, type DecisionRecord, type KnownStudy, type StudyOffer } from './decisions.js';
export {
  aggregateClaimRefusal,
  aggregateContentRefusal,
  approvalRefusal,
  cohortRefusal,
  studyRefusal,
  PolicyRefusalError,
  type PolicyRefusal,
} from './checks.js';
export { shareDatasetSummary, shareEvaluation, shareMetricsReport, shareSegmentationEvaluation } from './share.js';
