import { describe, expect, it } from 'vitest';
import { evaluationCounts, mergeEvaluationCounts, metricsFromCounts, type EvaluationCounts, type federation } from '@federa/shared';
import { GrpcStatus } from '../federation/federation-error.js';
import { refusal } from './refusal.testkit.js';
import { evaluationBins, summariseEvaluation, validateEvaluationReport, type EvaluationRow } from './evaluation.js';

const classNames = ['normal', 'lesion'];
const bins = 32;

/** Binary softmax rows from positive-class scores. */
const binary = (scores: number[]): number[] => scores.flatMap((s) => [1 - s, s]);

const siteA = evaluationCounts(binary([0.9, 0.8, 0.3, 0.6, 0.2]), [1, 1, 1, 0, 0], 2, bins);
const siteB = evaluationCounts(binary([0.7, 0.4, 0.1, 0.05, 0.55, 0.45]), [1, 1, 0, 0, 0, 0], 2, bins);

function report(counts: EvaluationCounts, overrides: Partial<federation.EvaluationReport> = {}): federation.EvaluationReport {
  return {
    studyId: 'study',
    round: 1,
    classNames,
    bins: counts.bins,
    confusion: counts.confusion,
    positives: counts.positives,
    negatives: counts.negatives,
    backend: 'wasm',
    seconds: 0.5,
    ...overrides,
  };
}


describe('validateEvaluationReport', () => {
  const expected = { classNames, bins };

  it('returns the counts of a consistent report', () => {
    expect(validateEvaluationReport(report(siteA), expected)).toEqual({ kind: 'counts', counts: siteA });
  });

  it('takes figures instead of counts from a site that shares figures only, and refuses both at once', () => {
    const figures = { accuracy: 0.8, balancedAccuracy: 0.75, auc: 0.9 };
    const figuresOnly = report(siteA, { confusion: [], positives: [], negatives: [], figures });
    expect(validateEvaluationReport(figuresOnly, expected)).toEqual({
      kind: 'figures',
      figures: { accuracy: 0.8, balancedAccuracy: 0.75, sensitivity: null, specificity: null, f1: null, auc: 0.9 },
    });
    expect(refusal(() => validateEvaluationReport(report(siteA, { figures }), expected)).message).toMatch(/counts or figures, not both/);
    const outOfRange = report(siteA, { confusion: [], positives: [], negatives: [], figures: { accuracy: 1.2 } });
    expect(refusal(() => validateEvaluationReport(outOfRange, expected)).message).toMatch(/figures\.accuracy: must be within \[0, 1\]/);
  });

  it.each<[string, Partial<federation.EvaluationReport>, RegExp]>([
    ['other class order', { classNames: ['lesion', 'normal'] }, /^evaluation report refused: class_names: \[lesion, normal\] are not the study's classes \[normal, lesion\]/],
    ['another class', { classNames: ['normal', 'lesion', 'cyst'] }, /class_names: /],
    ['other bins', { bins: 64 }, /bins: is 64, the evaluation task asked for 32/],
    ['short confusion matrix', { confusion: [1, 2, 2] }, /confusion: has 3 cells, expected classes² = 4/],
    ['short histogram', { positives: siteA.positives.slice(1) }, /positives: has 63 cells, expected classes x bins = 64/],
    ['histogram disagreeing with the matrix', { negatives: siteA.negatives.map((v, i) => (i === 0 ? v + 1 : v)) }, /negatives: class 0 histogram holds/],
    ['fractional count', { confusion: [0.5, 2, 1.5, 1] }, /confusion\.0: /],
    ['negative duration', { seconds: -1 }, /seconds: must be a finite number/],
    ['NaN duration', { seconds: Number.NaN }, /seconds: /],
    ['overlong backend', { backend: 'x'.repeat(65) }, /backend: longer than 64/],
  ])('refuses %s, naming the field', (_name, overrides, message) => {
    const error = refusal(() => validateEvaluationReport(report(siteA, overrides), expected));
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.message).toMatch(message);
  });
});

describe('summariseEvaluation', () => {
  const row = (siteId: string, counts: EvaluationCounts | null): EvaluationRow => ({
    siteId,
    counts,
    figures: null,
    refusedReason: null,
    backend: counts ? 'wasm' : null,
    seconds: counts ? 1.5 : null,
    reportedAt: counts ? new Date('2026-01-01T00:00:00Z') : null,
  });

  it('reports each site from its own counts and the consortium from the merged counts', () => {
    const view = summariseEvaluation([row('site-b', siteB), row('site-c', null), row('site-a', siteA)]);
    expect(view.requestedSites).toEqual(['site-a', 'site-b', 'site-c']);
    expect(view.pendingSites).toEqual(['site-c']);
    expect(view.sites.map((s) => s.siteId)).toEqual(['site-a', 'site-b']);
    expect(view.sites[0]).toMatchObject({ ...metricsFromCounts(siteA), samples: 5, backend: 'wasm', seconds: 1.5 });
    expect(view.sites[0]?.confusion).toEqual([
      [1, 1],
      [1, 2],
    ]);
    expect(view.sites[0]?.counts).toBeUndefined();
    const merged = metricsFromCounts(mergeEvaluationCounts([siteA, siteB]));
    expect(view.overall).toMatchObject({ ...merged, sites: 2, samples: 11, method: 'pooled-counts' });
    // Merged, not averaged: the overall accuracy weighs each site by its images.
    const mean = ((view.sites[0]?.accuracy ?? 0) + (view.sites[1]?.accuracy ?? 0)) / 2;
    expect(view.overall?.accuracy).not.toBeCloseTo(mean, 6);
    expect(view.overall?.accuracy).toBeCloseTo((3 + 4) / 11, 12);
  });

  it('includes the counts when asked, and has no overall figures before any report', () => {
    expect(summariseEvaluation([row('site-a', siteA)], { withCounts: true }).sites[0]?.counts).toEqual(siteA);
    expect(summariseEvaluation([row('site-a', null)])).toEqual({ requestedSites: ['site-a'], pendingSites: ['site-a'], refusedSites: [], sites: [], overall: null });
  });

  it('averages the sites\' figures when one shares figures only, and lists refusals apart from pending sites', () => {
    const figures = { ...metricsFromCounts(siteB), samples: undefined };
    delete figures.samples;
    const view = summariseEvaluation([
      row('site-a', siteA),
      { ...row('site-b', null), figures, reportedAt: new Date('2026-01-01T00:00:00Z') },
      { ...row('site-c', null), refusedReason: 'metrics-withheld' },
    ]);
    expect(view.pendingSites).toEqual([]);
    expect(view.refusedSites).toEqual([{ siteId: 'site-c', reason: 'metrics-withheld' }]);
    expect(view.sites.map((s) => [s.siteId, s.shared, s.samples])).toEqual([
      ['site-a', 'counts', 5],
      ['site-b', 'figures', null],
    ]);
    const a = metricsFromCounts(siteA);
    const b = metricsFromCounts(siteB);
    expect(view.overall).toMatchObject({ method: 'site-mean', sites: 2, samples: null, confusion: null });
    expect(view.overall?.accuracy).toBeCloseTo(((a.accuracy ?? 0) + (b.accuracy ?? 0)) / 2, 12);
  });
});

describe('evaluationBins', () => {
  it('keeps the default resolution for few classes and bounds the message for many', () => {
    expect(evaluationBins(2)).toBe(1024);
    expect(evaluationBins(1000) * 1000).toBeLessThanOrEqual(1 << 17);
    expect(evaluationBins(100_000)).toBe(16);
  });
});
