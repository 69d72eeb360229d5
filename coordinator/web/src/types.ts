/**
 * The coordinator's REST views, as far as the dashboard reads them. They mirror the server's interfaces
 * (coordinator/src/studies/studies.service.ts, rounds/evaluation.ts, sites/site-activity.ts, @federa/shared audit
 * and ledger types); they are declared again here because the browser build cannot import server code.
 */

export type Role = 'admin' | 'researcher' | 'auditor';

export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
  actor: string;
}

export interface StudySummary {
  id: string;
  name: string;
  owner: string | null;
  status: string;
  specHash: string;
  totalRounds: number;
  currentRound: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  droppedSites: string[];
}

export interface ModelView {
  kind: string;
  sha256: string;
  sizeBytes: number;
  parameterCount: number;
}

export interface RefusalView {
  siteId: string;
  round: number;
  task: string;
  reason: string;
  message: string;
  studyHash: string;
  reportedAt: string;
}

/** Figures of one evaluation; null where the data cannot define them. */
export interface EvaluationFigures {
  accuracy: number | null;
  balancedAccuracy: number | null;
  sensitivity: number | null;
  specificity: number | null;
  f1: number | null;
  auc: number | null;
}

export interface EvaluationCounts {
  classes: number;
  bins: number;
  /** confusion[t * classes + p]. */
  confusion: number[];
  /** positives[c * bins + b]: images of class c whose class-c score fell in bin b (bins ascend with the score). */
  positives: number[];
  negatives: number[];
}

export interface SiteEvaluationView extends EvaluationFigures {
  siteId: string;
  shared: 'counts' | 'figures';
  samples: number | null;
  confusion: number[][] | null;
  counts?: EvaluationCounts;
}

export interface OverallEvaluationView extends EvaluationFigures {
  sites: number;
  method: 'pooled-counts' | 'site-mean';
  samples: number | null;
  confusion: number[][] | null;
}

export interface RoundEvaluationView {
  requestedSites: string[];
  pendingSites: string[];
  refusedSites: Array<{ siteId: string; reason: string }>;
  sites: SiteEvaluationView[];
  overall: OverallEvaluationView | null;
}

export interface StudyEvaluation {
  studyId: string;
  classNames: string[];
  rounds: Array<{ number: number } & RoundEvaluationView>;
}

export interface SiteMetricView {
  siteId: string;
  kind: string;
  loss: number;
  accuracy: number;
  samples: number | null;
}

export interface RoundView {
  number: number;
  status: string;
  openedAt: string;
  closedAt: string | null;
  deadlineAt: string | null;
  extensions: number;
  assignedSites: string[];
  reportedSites: string[];
  participants: number;
  model: ModelView | null;
  metrics: SiteMetricView[];
  failures: Array<{ siteId: string; reason: string; message: string }>;
  refusals: RefusalView[];
  evaluation: RoundEvaluationView | null;
}

export interface DatasetSummaryView {
  files: number;
  accepted: number;
  byClass: Record<string, number>;
  studyId: string;
  reportedAt: string;
}

export interface StudyStatus extends StudySummary {
  definition: { classNames: string[]; rounds: number; minSites: number; model: { architecture: string } } & Record<string, unknown>;
  initialModel: ModelView | null;
  rounds: RoundView[];
  sites: Array<{ id: string; connected: boolean; dropped: boolean; dataset: DatasetSummaryView | null }>;
  refusals: RefusalView[];
}

export interface SiteView {
  id: string;
  status: string;
  connected: boolean;
  registeredAt: string;
  lastSeenAt: string;
  agentVersion: string | null;
  backend: string | null;
  policy: unknown;
  dataset: DatasetSummaryView | null;
}

export interface SiteIncidentView {
  studyId: string;
  round: number;
  task: string | null;
  reason: string;
  message: string;
  at: string;
}

export interface SiteActivityView {
  siteId: string;
  roundsAssigned: number;
  updates: number;
  bytesSent: number;
  lastUpdateAt: string | null;
  roundSeconds: { mean: number; median: number; max: number; last: number; lastStudyId: string; lastRound: number } | null;
  refusals: { count: number; last: SiteIncidentView | null };
  failures: { count: number; last: SiteIncidentView | null };
}

export interface SiteActivity {
  studyId: string | null;
  sites: SiteActivityView[];
}

export interface AuditRecord {
  seq: number;
  at: string;
  kind: string;
  actor: string;
  studyId: string | null;
  round: number | null;
  siteId: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface AuditRecordsPage {
  records: AuditRecord[];
  nextAfterSeq: number | null;
}

export interface AuditVerification {
  ok: boolean;
  records: number;
  head: { seq: number; hash: string } | null;
  firstBad: { seq: number; position: number; reason: string } | null;
  checkpoints: { total: number; verified: number; latest: { seq: number; at: string } | null; failures: Array<{ seq: number; reason: string }> };
  uncheckpointed: number;
}

export interface AuditCheckpoint {
  seq: number;
  hash: string;
  at: string;
  consortium: string;
  certificateFingerprint: string;
}

export interface ReconcileItem {
  kind: string;
  studyId: string | null;
  round: number | null;
  sha256: string | null;
  bytes: number | null;
  at: string;
  ledgerLine: number | null;
  ledgerSeq: number | null;
  auditSeq: number | null;
  reason: string;
}

export interface ReconciliationResult {
  ledger: {
    ok: boolean;
    entries: number;
    siteId: string | null;
    problems: Array<{ line: number; seq: number | null; reason: string }>;
    receipts: Array<{ status: string }>;
    unacknowledged: Array<{ line: number; seq: number; studyId: string | null; round: number | null }>;
    caChecked: boolean;
  };
  reconciliation: {
    ok: boolean;
    siteId: string;
    ledgerEntries: number;
    auditRecords: number;
    matched: number;
    refused: ReconcileItem[];
    missing: ReconcileItem[];
    extra: ReconcileItem[];
    altered: Array<ReconcileItem & { ledgerSha256: string | null; auditSha256: string | null }>;
    notCovered: ReconcileItem[];
    receipts: { verified: number; unsigned: number; failures: Array<{ reason: string } & Record<string, unknown>> };
  };
}

/** Final study statuses: nothing changes after them (the event stream then ends). */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
