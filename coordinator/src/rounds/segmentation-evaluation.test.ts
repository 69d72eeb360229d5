import { describe, expect, it } from 'vitest';
import { mergeSegmentationCounts, segmentationCounts, segmentationMetricsFromCounts, type federation, type SegmentationCounts } from '@federa/shared';
import { GrpcStatus } from '../federation/federation-error.js';
import { refusal } from './refusal.testkit.js';
import { summariseEvaluation, validateEvaluationReport, type EvaluationRow } from './evaluation.js';

const classNames = ['background', 'lesion'];
/** 2x2 images: one-hot probabilities from predicted labels. */
const oneHot = (labels: number[]): number[] => labels.flatMap((l) => [l === 0 ? 1 : 0, l === 1 ? 1 : 0]);
const siteA = segmentationCounts(oneHot([0, 1, 1, 0, 0, 0, 0, 1]), [0, 1, 0, 0, 0, 0, 1, 1], 2, 4);
const siteB = segmentationCounts(oneHot([1, 1, 0, 0]), [1, 1, 1, 0], 2, 4);
const expected = { classNames, bins: 1024, segmentation: { pixelsPerImage: 4 } };

function report(counts: SegmentationCounts, overrides: Partial<federation.SegmentationEvaluation> = {}): federation.EvaluationReport {
  return {
    studyId: 'study',
    round: 1,
    classNames,
    bins: 0,
    confusion: [],
    positives: [],
    negatives: [],
    backend: 'wasm',
    seconds: 0.5,
    segmentation: {
      images: counts.images,
      truePositives: counts.tp,
      falsePositives: counts.fp,
      falseNegatives: counts.fn,
      diceBins: counts.bins,
      diceHistogram: counts.diceHistogram,
      ...overrides,
    },
  };
}


describe('segmentation evaluation reports', () => {
  it('takes consistent pixel counts, or figures alone', () => {
    expect(validateEvaluationReport(report(siteA), expected)).toEqual({ kind: 'counts', counts: siteA });
    const figuresOnly = report(siteA, { images: 0, truePositives: [], falsePositives: [], falseNegatives: [], diceHistogram: [], figures: { dice: 0.5, iou: 0.33 } });
    expect(validateEvaluationReport(figuresOnly, expected)).toEqual({ kind: 'figures', figures: { dice: 0.5, iou: 0.33, sensitivity: null, precision: null } });
  });

  it.each<[string, federation.EvaluationReport, RegExp]>([
    ['a report without segmentation counts', { ...report(siteA), segmentation: undefined }, /segmentation: a segmentation study's evaluation carries segmentation counts or figures/],
    ['classification counts beside them', { ...report(siteA), confusion: [1, 0, 0, 1] }, /a segmentation study's evaluation carries segmentation counts, not a classifier's/],
    ['counts and figures together', report(siteA, { figures: { dice: 0.5 } }), /segmentation\.figures: a report carries counts or figures, not both/],
    ['a figure out of range', report(siteA, { images: 0, truePositives: [], falsePositives: [], falseNegatives: [], diceHistogram: [], figures: { precision: 1.5 } }), /segmentation\.figures\.precision: must be within \[0, 1\]/],
    ['other Dice bins', report(siteA, { diceBins: 20 }), /segmentation\.dice_bins: is 20, every site uses 10/],
    ['a count per class missing', report(siteA, { truePositives: [3] }), /segmentation\.tp: must hold 2 values/],
    ['pixels that do not add up to the images', report(siteA, { images: 3 }), /3 images of 4 pixels hold 12 pixels, but the counts hold 8 true and 8 predicted/],
    ['a Dice histogram missing an image', report(siteA, { diceHistogram: siteA.diceHistogram.map((n, i) => (i === siteA.diceHistogram.findIndex((v) => v > 0) ? n - 1 : n)) }), /class 1's histogram holds 1 images, the report 2/],
  ])('refuses %s, naming the field', (_name, bad, message) => {
    const error = refusal(() => validateEvaluationReport(bad, expected));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.message).toMatch(message);
  });

  it('refuses segmentation counts for a classification study', () => {
    expect(refusal(() => validateEvaluationReport(report(siteA), { classNames, bins: 1024 })).message).toMatch(/segmentation: this study is a classification study/);
  });
});

describe('segmentation evaluation summaries', () => {
  const row = (siteId: string, counts: SegmentationCounts | null, figures: unknown = null): EvaluationRow => ({
    siteId,
    counts,
    figures,
    refusedReason: null,
    backend: 'wasm',
    seconds: 1,
    reportedAt: counts || figures ? new Date('2026-01-01T00:00:00Z') : null,
  });

  it('reports Dice, IoU, sensitivity and precision per site and from the pooled counts, with per-segment figures and Dice histograms', () => {
    const view = summariseEvaluation([row('site-b', siteB), row('site-a', siteA)], { classNames });
    expect(view.sites.map((s) => [s.siteId, s.samples, s.accuracy])).toEqual([
      ['site-a', 2, null],
      ['site-b', 1, null],
    ]);
    const a = segmentationMetricsFromCounts(siteA).mean;
    expect(view.sites[0]?.segmentation).toMatchObject(a);
    const pooled = segmentationMetricsFromCounts(mergeSegmentationCounts(siteA, siteB)).mean;
    expect(view.overall).toMatchObject({ method: 'pooled-counts', sites: 2, samples: 3, accuracy: null, segmentation: pooled });
    // Site A: lesion tp 2 fp 1 fn 1; site B: tp 2 fp 0 fn 1 -> pooled Dice 8 / (8 + 1 + 2).
    expect(view.overall?.segmentation?.dice).toBeCloseTo(8 / 11, 12);
    expect(view.overall?.segmentation?.perClass).toEqual([{ className: 'lesion', ...pooled }]);
    expect(view.overall?.segmentation?.diceHistogram?.counts[0]?.reduce((x, y) => x + y, 0)).toBe(3);
  });

  it('averages the sites\' figures when one shares figures only', () => {
    const view = summariseEvaluation([row('site-a', siteA), row('site-b', null, { dice: 0.4, iou: 0.25, sensitivity: null, precision: 0.5 })], { classNames });
    expect(view.sites[1]).toMatchObject({ shared: 'figures', samples: null, segmentation: { dice: 0.4, perClass: null, diceHistogram: null } });
    const a = segmentationMetricsFromCounts(siteA).mean;
    expect(view.overall).toMatchObject({ method: 'site-mean', samples: null });
    expect(view.overall?.segmentation?.dice).toBeCloseTo(((a.dice ?? 0) + 0.4) / 2, 12);
    expect(view.overall?.segmentation?.sensitivity).toBeCloseTo(a.sensitivity ?? 0, 12);
  });
});
