import { z } from 'zod';
import {
  DEFAULT_SCORE_BINS,
  describeIssues,
  evaluationCountsSchema,
  mergeEvaluationCounts,
  segmentationCountsSchema,
  metricsFromCounts,
  type ClassificationMetrics,
  type EvaluationCounts,
  type federation,
} from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import {
  isSegmentationCounts,
  overallSegmentation,
  segmentationFiguresSchema,
  segmentationViewOfCounts,
  segmentationViewOfFigures,
  validateSegmentationReport,
  type SegmentationEvaluationView,
  type ValidatedSegmentation,
} from './segmentation-evaluation.js';

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
  /** A segmentation study: its reports carry pixel counts on the study's grid of this many pixels per image. */
  segmentation?: { pixelsPerImage: number };
}

/** What a site shared of its evaluation: the counts (policy shareMetrics "full") or only figures ("aggregate"). */
export type ValidatedEvaluation = { kind: 'counts'; counts: EvaluationCounts } | { kind: 'figures'; figures: EvaluationFigures } | ValidatedSegmentation;

/** ClassificationMetrics without the image count: what a site sharing figures only reports. */
export type EvaluationFigures = Omit<ClassificationMetrics, 'samples'>;

const FIGURE_NAMES = ['accuracy', 'balancedAccuracy', 'sensitivity', 'specificity', 'f1', 'auc'] as const;

/**
 * Checks one site's report. Refuses (INVALID_ARGUMENT, naming the field) anything that could not be merged with
 * the other sites' reports: other classes or class order, other bins, shapes that do not fit, histograms that
 * disagree with the confusion matrix, figures outside [0, 1], counts and figures together, a non-finite or
 * absurd duration.
 */
export function validateEvaluationReport(report: federation.EvaluationReport, expected: EvaluationExpectation): ValidatedEvaluation {
  const refuse = (message: string): never => {
    throw new FederationError(GrpcStatus.INVALID_ARGUMENT, `evaluation report refused: ${message}`);
  };
  const names = report.classNames;
  if (names.length !== expected.classNames.length || names.some((name, i) => name !== expected.classNames[i])) {
    refuse(`class_names: [${names.join(', ')}] are not the study's classes [${expected.classNames.join(', ')}] in that order`);
  }
  if (!Number.isFinite(report.seconds) || report.seconds < 0 || report.seconds > MAX_SECONDS) {
    refuse(`seconds: must be a finite number in [0, ${MAX_SECONDS}], got ${report.seconds}`);
  }
  if (report.backend.length > MAX_BACKEND_NAME) refuse(`backend: longer than ${MAX_BACKEND_NAME} characters`);
  const hasCounts = report.confusion.length + report.positives.length + report.negatives.length > 0;
  if (expected.segmentation) {
    if (hasCounts || report.figures) refuse('confusion, positives, negatives, figures: a segmentation study\'s evaluation carries segmentation counts, not a classifier\'s');
    return validateSegmentationReport(report.segmentation, { classes: names.length, pixelsPerImage: expected.segmentation.pixelsPerImage }, refuse);
  }
  if (report.segmentation) refuse('segmentation: this study is a classification study');
  if (report.figures) {
    if (hasCounts) refuse('figures: a report carries counts or figures, not both');
    const figures = {} as EvaluationFigures;
    for (const name of FIGURE_NAMES) {
      const value = report.figures[name];
      if (value !== undefined && (!Number.isFinite(value) || value < 0 || value > 1)) refuse(`figures.${name}: must be within [0, 1], got ${value}`);
      figures[name] = value ?? null;
    }
    return { kind: 'figures', figures };
  }
  if (report.bins !== expected.bins) refuse(`bins: is ${report.bins}, the evaluation task asked for ${expected.bins}`);
  const parsed = evaluationCountsSchema.safeParse({
    classes: names.length,
    bins: report.bins,
    confusion: report.confusion,
    positives: report.positives,
    negatives: report.negatives,
  });
  if (!parsed.success) refuse(describeIssues(parsed.error).join('; '));
  return { kind: 'counts', counts: parsed.data as EvaluationCounts };
}

/** A stored evaluation row, as far as the summary needs it. */
export interface EvaluationRow {
  siteId: string;
  counts: unknown;
  figures: unknown;
  refusedReason: string | null;
  backend: string | null;
  seconds: number | null;
  reportedAt: Date | null;
}

export interface SiteEvaluationView extends EvaluationFigures {
  siteId: string;
  /** What the site shared: its counts, or (under its policy) only the figures. */
  shared: 'counts' | 'figures';
  /** Held-out images; null when the site shares figures only. */
  samples: number | null;
  /** confusion[t][p]: held-out images of true class t predicted as p; null when the site shares figures only. */
  confusion: number[][] | null;
  backend: string | null;
  seconds: number | null;
  reportedAt: string;
  /** The counts as reported (with the score histograms), when asked for: what anyone can re-merge and check. */
  counts?: EvaluationCounts;
  /** A segmentation study's figures (its classification figures are then null); absent for a classifier. */
  segmentation?: SegmentationEvaluationView;
}

export interface OverallEvaluationView extends EvaluationFigures {
  sites: number;
  /**
   * pooled-counts: from the summed counts, as if the held-out sets were pooled (every site shared counts).
   * site-mean: the mean of the sites' figures (some site shared figures only, so there is nothing to pool).
   */
  method: 'pooled-counts' | 'site-mean';
  samples: number | null;
  confusion: number[][] | null;
  segmentation?: SegmentationEvaluationView;
}

export interface RoundEvaluationView {
  /** Sites asked to evaluate the round's model (those whose updates it was made from). */
  requestedSites: string[];
  /** Asked and not answered (yet): the task is replayed when they reconnect. */
  pendingSites: string[];
  /** Asked, and their policy refused (e.g. shareMetrics none), with the reason. */
  refusedSites: Array<{ siteId: string; reason: string }>;
  /** Per site. */
  sites: SiteEvaluationView[];
  /** All reporting sites together; null before any report. */
  overall: OverallEvaluationView | null;
}

const evaluationFiguresSchema = z
  .object(Object.fromEntries(FIGURE_NAMES.map((name) => [name, z.number().min(0).max(1).nullable()])) as Record<(typeof FIGURE_NAMES)[number], z.ZodNullable<z.ZodNumber>>)
  .strict();

/**
 * Per-site and overall metrics of one round from its stored rows. When every site shared counts, overall figures
 * come from the merged counts, not an average of site figures, so a small site weighs what its images weigh.
 */
export function summariseEvaluation(rows: readonly EvaluationRow[], options: { withCounts?: boolean; classNames?: readonly string[] } = {}): RoundEvaluationView {
  const reported = rows
    .filter((r): r is EvaluationRow & { reportedAt: Date } => r.reportedAt !== null && (r.counts !== null || r.figures !== null))
    .sort((a, b) => a.siteId.localeCompare(b.siteId));
  const sites: SiteEvaluationView[] = [];
  const allCounts: EvaluationCounts[] = [];
  const segmentation = reported.some((row) => isSegmentationCounts(row.counts) || isSegmentationFigures(row.figures));
  if (segmentation) return { ...requests(rows), ...segmentationSites(reported, options.classNames ?? []) };
  for (const row of reported) {
    const common = { siteId: row.siteId, backend: row.backend, seconds: row.seconds, reportedAt: row.reportedAt.toISOString() };
    if (row.counts !== null) {
      const counts = evaluationCountsSchema.parse(row.counts) as EvaluationCounts;
      allCounts.push(counts);
      sites.push({ ...common, shared: 'counts', ...metricsFromCounts(counts), confusion: confusionMatrix(counts), ...(options.withCounts ? { counts } : {}) });
    } else {
      sites.push({ ...common, shared: 'figures', ...evaluationFiguresSchema.parse(row.figures), samples: null, confusion: null });
    }
  }
  return { ...requests(rows), sites, overall: overallOf(sites, allCounts) };
}

/** Who was asked, who has not answered and who refused. */
function requests(rows: readonly EvaluationRow[]): Pick<RoundEvaluationView, 'requestedSites' | 'pendingSites' | 'refusedSites'> {
  return {
    requestedSites: rows.map((r) => r.siteId).sort(),
    pendingSites: rows.filter((r) => r.reportedAt === null && r.refusedReason === null).map((r) => r.siteId).sort(),
    refusedSites: rows
      .filter((r): r is EvaluationRow & { refusedReason: string } => r.refusedReason !== null)
      .map((r) => ({ siteId: r.siteId, reason: r.refusedReason }))
      .sort((a, b) => a.siteId.localeCompare(b.siteId)),
  };
}

const NO_CLASSIFICATION_FIGURES: EvaluationFigures = { accuracy: null, balancedAccuracy: null, sensitivity: null, specificity: null, f1: null, auc: null };

function isSegmentationFigures(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'dice' in value;
}

/** A segmentation study's rows: the classification figures stay null, the segmentation view carries the figures. */
function segmentationSites(
  reported: ReadonlyArray<EvaluationRow & { reportedAt: Date }>,
  classNames: readonly string[],
): Pick<RoundEvaluationView, 'sites' | 'overall'> {
  const sites: SiteEvaluationView[] = [];
  const counts = [];
  for (const row of reported) {
    const common = { siteId: row.siteId, backend: row.backend, seconds: row.seconds, reportedAt: row.reportedAt.toISOString(), ...NO_CLASSIFICATION_FIGURES, confusion: null };
    if (row.counts !== null) {
      const parsed = segmentationCountsSchema.parse(row.counts);
      counts.push(parsed);
      sites.push({ ...common, shared: 'counts', samples: parsed.images, segmentation: segmentationViewOfCounts(parsed, classNames) });
    } else {
      sites.push({ ...common, shared: 'figures', samples: null, segmentation: segmentationViewOfFigures(segmentationFiguresSchema.parse(row.figures)) });
    }
  }
  if (sites.length === 0) return { sites, overall: null };
  const overall = overallSegmentation(
    sites.map((s) => s.segmentation as SegmentationEvaluationView),
    counts,
    classNames,
  );
  return { sites, overall: { ...NO_CLASSIFICATION_FIGURES, sites: sites.length, method: overall.method, samples: overall.images, confusion: null, segmentation: overall.view } };
}

function overallOf(sites: readonly SiteEvaluationView[], counts: readonly EvaluationCounts[]): OverallEvaluationView | null {
  if (sites.length === 0) return null;
  if (counts.length === sites.length) {
    const merged = mergeEvaluationCounts(counts);
    return { ...metricsFromCounts(merged), sites: sites.length, method: 'pooled-counts', confusion: confusionMatrix(merged) };
  }
  const mean = (name: (typeof FIGURE_NAMES)[number]): number | null => {
    const values = sites.map((s) => s[name]).filter((v): v is number => v !== null);
    return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
  };
  const figures = Object.fromEntries(FIGURE_NAMES.map((name) => [name, mean(name)])) as EvaluationFigures;
  return { ...figures, sites: sites.length, method: 'site-mean', samples: null, confusion: null };
}

function confusionMatrix(counts: EvaluationCounts): number[][] {
  return Array.from({ length: counts.classes }, (_, t) => counts.confusion.slice(t * counts.classes, (t + 1) * counts.classes));
}
