import {
  DEFAULT_SCORE_BINS,
  describeIssues,
  evaluationCountsSchema,
  mergeEvaluationCounts,
  metricsFromCounts,
  type ClassificationMetrics,
  type EvaluationCounts,
  type federation,
} from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';

/** Bounds classes x bins, so a many-class study's report stays a small message (and a small row). */
const MAX_HISTOGRAM_CELLS = 1 << 17;
const MIN_BINS = 16;
const MAX_BACKEND_NAME = 64;
/** A day: anything longer is a clock or unit error, not an evaluation. */
const MAX_SECONDS = 24 * 3600;

/** Score bins per class every site uses for a study with `classes` classes. */
export function evaluationBins(classes: number): number {
  return Math.max(MIN_BINS, Math.min(DEFAULT_SCORE_BINS, Math.floor(MAX_HISTOGRAM_CELLS / classes)));
}

/** What a report is checked against: the study's classes and the bins the site was asked for. */
export interface EvaluationExpectation {
  classNames: readonly string[];
  bins: number;
}

/**
 * Checks one site's report and returns its counts. Refuses (INVALID_ARGUMENT, naming the field) anything that
 * could not be merged with the other sites' counts: other classes or class order, other bins, shapes that do not
 * fit, histograms that disagree with the confusion matrix, a non-finite or absurd duration.
 */
export function validateEvaluationReport(report: federation.EvaluationReport, expected: EvaluationExpectation): EvaluationCounts {
  const refuse = (message: string): never => {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `evaluation report refused: ${message}`);
  };
  const names = report.classNames;
  if (names.length !== expected.classNames.length || names.some((name, i) => name !== expected.classNames[i])) {
    refuse(`class_names: [${names.join(', ')}] are not the study's classes [${expected.classNames.join(', ')}] in that order`);
  }
  if (report.bins !== expected.bins) refuse(`bins: is ${report.bins}, the evaluation task asked for ${expected.bins}`);
  if (!Number.isFinite(report.seconds) || report.seconds < 0 || report.seconds > MAX_SECONDS) {
    refuse(`seconds: must be a finite number in [0, ${MAX_SECONDS}], got ${report.seconds}`);
  }
  if (report.backend.length > MAX_BACKEND_NAME) refuse(`backend: longer than ${MAX_BACKEND_NAME} characters`);
  const parsed = evaluationCountsSchema.safeParse({
    classes: names.length,
    bins: report.bins,
    confusion: report.confusion,
    positives: report.positives,
    negatives: report.negatives,
  });
  if (!parsed.success) refuse(describeIssues(parsed.error).join('; '));
  return parsed.data as EvaluationCounts;
}

/** A stored evaluation row, as far as the summary needs it. */
export interface EvaluationRow {
  siteId: string;
  counts: unknown;
  backend: string | null;
  seconds: number | null;
  reportedAt: Date | null;
}

export interface SiteEvaluationView extends ClassificationMetrics {
  siteId: string;
  /** confusion[t][p]: held-out images of true class t predicted as p. */
  confusion: number[][];
  backend: string | null;
  seconds: number | null;
  reportedAt: string;
  /** The counts as reported (with the score histograms), when asked for: what anyone can re-merge and check. */
  counts?: EvaluationCounts;
}

export interface RoundEvaluationView {
  /** Sites asked to evaluate the round's model (those whose updates it was made from). */
  requestedSites: string[];
  /** Asked and not answered (yet): the task is replayed when they reconnect. */
  pendingSites: string[];
  /** Per site, from its own counts. */
  sites: SiteEvaluationView[];
  /** All reporting sites together, from their summed counts (what pooling their held-out data would give); null before any report. */
  overall: (ClassificationMetrics & { sites: number; confusion: number[][] }) | null;
}

/**
 * Per-site and overall metrics of one round from its stored rows. Overall figures come from the merged counts, not
 * an average of site figures, so a small site weighs what its images weigh.
 */
export function summariseEvaluation(rows: readonly EvaluationRow[], options: { withCounts?: boolean } = {}): RoundEvaluationView {
  const reported = rows
    .filter((r): r is EvaluationRow & { reportedAt: Date } => r.reportedAt !== null && r.counts !== null)
    .map((r) => ({ row: r, counts: evaluationCountsSchema.parse(r.counts) as EvaluationCounts }))
    .sort((a, b) => a.row.siteId.localeCompare(b.row.siteId));
  const merged = reported.length > 0 ? mergeEvaluationCounts(reported.map((r) => r.counts)) : undefined;
  return {
    requestedSites: rows.map((r) => r.siteId).sort(),
    pendingSites: rows.filter((r) => r.reportedAt === null).map((r) => r.siteId).sort(),
    sites: reported.map(({ row, counts }) => ({
      siteId: row.siteId,
      ...metricsFromCounts(counts),
      confusion: confusionMatrix(counts),
      backend: row.backend,
      seconds: row.seconds,
      reportedAt: row.reportedAt.toISOString(),
      ...(options.withCounts ? { counts } : {}),
    })),
    overall: merged ? { ...metricsFromCounts(merged), sites: reported.length, confusion: confusionMatrix(merged) } : null,
  };
}

function confusionMatrix(counts: EvaluationCounts): number[][] {
  return Array.from({ length: counts.classes }, (_, t) => counts.confusion.slice(t * counts.classes, (t + 1) * counts.classes));
}
