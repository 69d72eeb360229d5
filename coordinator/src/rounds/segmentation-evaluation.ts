import { z } from 'zod';
import {
  DEFAULT_DICE_BINS,
  describeIssues,
  mergeSegmentationCounts,
  segmentationCountsSchema,
  segmentationMetricsFromCounts,
  type federation,
  type SegmentationClassMetrics,
  type SegmentationCounts,
} from '@federa/shared';

/**
 * A segmentation study's federated evaluation: each site's pixel counts per class (true and false positives, false
 * negatives, summed over its held-out images) and per-image Dice histograms, or under its policy only the mean
 * figures. Sums of sites' counts give the consortium's Dice, IoU, sensitivity and precision as if the held-out sets
 * were pooled; nothing per image ever arrives.
 */

export const SEGMENTATION_FIGURE_NAMES = ['dice', 'iou', 'sensitivity', 'precision'] as const;

/** Mean over the foreground classes (null: no such pixel true nor predicted anywhere). */
export type SegmentationFigures = SegmentationClassMetrics;

export interface SegmentationEvaluationView extends SegmentationFigures {
  /** Per foreground class, from the counts; null when only figures were shared. */
  perClass: Array<SegmentationFigures & { className: string }> | null;
  /** Per foreground class, held-out images per Dice bin over [0, 1]; null when only figures were shared. */
  diceHistogram: { bins: number; counts: number[][] } | null;
}

export type ValidatedSegmentation = { kind: 'counts'; counts: SegmentationCounts } | { kind: 'figures'; figures: SegmentationFigures };

export const segmentationFiguresSchema = z
  .object(Object.fromEntries(SEGMENTATION_FIGURE_NAMES.map((name) => [name, z.number().min(0).max(1).nullable()])) as Record<(typeof SEGMENTATION_FIGURE_NAMES)[number], z.ZodNullable<z.ZodNumber>>)
  .strict();

/** Stored counts are told apart from a classifier's by their pixel counts. */
export function isSegmentationCounts(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'tp' in value;
}

/**
 * Checks a segmentation report's part: figures within [0, 1] and no counts beside them; or counts in the study's
 * shape (one value per class, the study's Dice bins), whose predicted and true pixels each add up to the images'
 * pixels on the study's grid and whose Dice histograms hold every image once per foreground class. `refuse` throws.
 */
export function validateSegmentationReport(
  report: federation.SegmentationEvaluation | undefined,
  expected: { classes: number; pixelsPerImage: number },
  refuse: (message: string) => never,
): ValidatedSegmentation {
  if (!report) return refuse('segmentation: a segmentation study\'s evaluation carries segmentation counts or figures');
  const hasCounts = report.truePositives.length + report.falsePositives.length + report.falseNegatives.length + report.diceHistogram.length > 0;
  if (report.figures) {
    if (hasCounts) refuse('segmentation.figures: a report carries counts or figures, not both');
    const figures = {} as SegmentationFigures;
    for (const name of SEGMENTATION_FIGURE_NAMES) {
      const value = report.figures[name];
      if (value !== undefined && (!Number.isFinite(value) || value < 0 || value > 1)) refuse(`segmentation.figures.${name}: must be within [0, 1], got ${value}`);
      figures[name] = value ?? null;
    }
    return { kind: 'figures', figures };
  }
  if (report.diceBins !== DEFAULT_DICE_BINS) refuse(`segmentation.dice_bins: is ${report.diceBins}, every site uses ${DEFAULT_DICE_BINS}`);
  const parsed = segmentationCountsSchema.safeParse({
    classes: expected.classes,
    bins: report.diceBins,
    images: report.images,
    tp: report.truePositives,
    fp: report.falsePositives,
    fn: report.falseNegatives,
    diceHistogram: report.diceHistogram,
  });
  if (!parsed.success) return refuse(describeIssues(parsed.error).map((issue) => `segmentation.${issue}`).join('; '));
  const counts = parsed.data;
  const pixels = counts.images * expected.pixelsPerImage;
  const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
  const truth = sum(counts.tp) + sum(counts.fn);
  const predicted = sum(counts.tp) + sum(counts.fp);
  if (truth !== pixels || predicted !== pixels) {
    refuse(`segmentation: ${counts.images} images of ${expected.pixelsPerImage} pixels hold ${pixels} pixels, but the counts hold ${truth} true and ${predicted} predicted`);
  }
  for (let c = 0; c < counts.classes - 1; c++) {
    const images = sum(counts.diceHistogram.slice(c * counts.bins, (c + 1) * counts.bins));
    if (images !== counts.images) refuse(`segmentation.dice_histogram: class ${c + 1}'s histogram holds ${images} images, the report ${counts.images}`);
  }
  return { kind: 'counts', counts };
}

/** A site's (or the pooled) view from counts. */
export function segmentationViewOfCounts(counts: SegmentationCounts, classNames: readonly string[]): SegmentationEvaluationView {
  const { perClass, mean } = segmentationMetricsFromCounts(counts);
  return {
    ...mean,
    perClass: perClass.map((m, k) => ({ className: classNames[k + 1] ?? `class ${k + 1}`, ...m })),
    diceHistogram: { bins: counts.bins, counts: Array.from({ length: counts.classes - 1 }, (_, c) => counts.diceHistogram.slice(c * counts.bins, (c + 1) * counts.bins)) },
  };
}

export function segmentationViewOfFigures(figures: SegmentationFigures): SegmentationEvaluationView {
  return { ...figures, perClass: null, diceHistogram: null };
}

/** Overall: from the summed counts when every site shared counts, else the mean of the sites' figures. */
export function overallSegmentation(
  views: readonly SegmentationEvaluationView[],
  counts: readonly SegmentationCounts[],
  classNames: readonly string[],
): { view: SegmentationEvaluationView; method: 'pooled-counts' | 'site-mean'; images: number | null } {
  const first = counts[0];
  if (first && counts.length === views.length) {
    const merged = counts.slice(1).reduce(mergeSegmentationCounts, first);
    return { view: segmentationViewOfCounts(merged, classNames), method: 'pooled-counts', images: merged.images };
  }
  const mean = (name: (typeof SEGMENTATION_FIGURE_NAMES)[number]): number | null => {
    const values = views.map((v) => v[name]).filter((v): v is number => v !== null);
    return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
  };
  const figures: SegmentationFigures = { dice: mean('dice'), iou: mean('iou'), sensitivity: mean('sensitivity'), precision: mean('precision') };
  return { view: segmentationViewOfFigures(figures), method: 'site-mean', images: null };
}
