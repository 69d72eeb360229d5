/**
 * The coordinator's REST views, as the dashboard reads them: the server's own types (type-only imports, erased
 * from the browser code; tsc resolves them through the project reference to the coordinator's declarations), so
 * a view that changes on the server fails this build instead of drifting.
 */

export type { Principal, Role } from '../../src/auth/roles.js';
export type {
  ModelView,
  RefusalView,
  RoundView,
  SiteMetricView,
  SiteView,
  StudyEvaluation,
  StudyStatus,
  StudySummary,
} from '../../src/studies/studies.service.js';
export type { OverallEvaluationView, RoundEvaluationView, SiteEvaluationView, EvaluationFigures } from '../../src/rounds/evaluation.js';
export type { DatasetSummaryView } from '../../src/sites/dataset-summaries.js';
export type { SiteActivity, SiteActivityView, SiteIncidentView } from '../../src/sites/site-activity.js';
export type { AuditRecordsPage, ReconciliationResult } from '../../src/audit/audit.controller.js';
export type { AuditCheckpoint, AuditRecord, AuditVerification, EvaluationCounts, ReconcileItem } from '@federa/shared';

/** Final study statuses: nothing changes after them (the event stream then ends). */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
