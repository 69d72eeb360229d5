import { describe, expect, it } from 'vitest';
import { createPrng, evaluationCounts, histogramAuc, mergeEvaluationCounts, metricsFromCounts } from '@federa/shared';
import { metricData } from '../coordinator/web/src/charts.js';
import { areaUnder, mergeCounts, rocCurve, rocCurves } from '../coordinator/web/src/roc.js';
import { siteRoundRows } from '../coordinator/web/src/round-progress.js';
import type { RoundView, StudyStatus } from '../coordinator/web/src/types.js';

/** Counts a site could report: `images` predictions over `classes` classes, scores loosely following the label. */
function siteCounts(seed: number, images: number, classes: number, bins = 1024) {
  const prng = createPrng(seed);
  const labels = Array.from({ length: images }, () => Math.floor(prng.nextFloat() * classes));
  const probabilities = labels.flatMap((label) => {
    const raw = Array.from({ length: classes }, (_, c) => prng.nextFloat() + (c === label ? 0.6 : 0));
    const sum = raw.reduce((a, b) => a + b, 0);
    return raw.map((v) => v / sum);
  });
  return evaluationCounts(probabilities, labels, classes, bins);
}

/**
 * The dashboard's own arithmetic, in Node (the modules touch the DOM only when drawing): ROC points from the score
 * histograms sites report, each site's state in a round, and the series the charts draw.
 */
describe('dashboard logic', () => {
  it('draws ROC curves from the merged histograms whose area is the AUC the coordinator reports', () => {
    for (const classes of [2, 3]) {
      const parts = [siteCounts(1, 80, classes), siteCounts(2, 50, classes)];
      const merged = mergeCounts(parts)!;
      expect(merged).toEqual(mergeEvaluationCounts(parts));
      const curves = rocCurves(merged, ['a', 'b', 'c'].slice(0, classes), ['#000']);
      expect(curves.map((c) => c.label)).toEqual(classes === 2 ? ['b vs a'] : ['a vs rest', 'b vs rest', 'c vs rest']);
      const classIndex = (i: number) => (classes === 2 ? 1 : i);
      curves.forEach((curve, i) => {
        const c = classIndex(i);
        const bins = merged.bins;
        const expected = histogramAuc(merged.positives.slice(c * bins, (c + 1) * bins), merged.negatives.slice(c * bins, (c + 1) * bins))!;
        expect(curve.auc).toBeCloseTo(expected, 12);
        expect(curve.points[0]).toEqual([0, 0]);
        expect(curve.points.at(-1)).toEqual([1, 1]);
        // Monotone: lowering the threshold never loses a true or a false positive.
        curve.points.slice(1).forEach(([x, y], k) => {
          expect(x).toBeGreaterThanOrEqual(curve.points[k]![0]);
          expect(y).toBeGreaterThanOrEqual(curve.points[k]![1]);
        });
      });
      // Binary: the one curve's area is the study's AUC; multi-class: the macro average of the curves'.
      const auc = metricsFromCounts(merged).auc!;
      const drawn = curves.reduce((a, c) => a + c.auc!, 0) / curves.length;
      expect(drawn).toBeCloseTo(auc, 12);
    }
  });

  it('has no ROC curve for a class without images, and refuses to merge counts of other shapes', () => {
    const counts = siteCounts(3, 20, 2, 16);
    const onlyNegatives = { ...counts, positives: counts.positives.map(() => 0) };
    expect(rocCurve(onlyNegatives, 1)).toBeNull();
    expect(mergeCounts([counts, siteCounts(4, 20, 2, 32)])).toBeNull();
    expect(areaUnder([[0, 0], [0, 1], [1, 1]])).toBe(1);
  });

  const round = (overrides: Partial<RoundView>): RoundView => ({
    number: 3,
    status: 'open',
    openedAt: '2026-01-01T00:00:00.000Z',
    closedAt: null,
    deadlineAt: '2026-01-01T00:10:00.000Z',
    extensions: 0,
    assignedSites: [],
    reportedSites: [],
    participants: 0,
    model: null,
    metrics: [],
    failures: [],
    refusals: [],
    evaluation: null,
    ...overrides,
  });
  const study = (rounds: RoundView[], droppedSites: string[] = []): StudyStatus =>
    ({ id: 's', name: 's', status: 'running', totalRounds: 3, currentRound: rounds.length, droppedSites, rounds, sites: [], refusals: [] }) as unknown as StudyStatus;

  it('says for each site of the round whether it reported, failed or refused (with why), was dropped, or is still at it', () => {
    const current = round({
      assignedSites: ['a', 'b', 'c', 'd'],
      reportedSites: ['a'],
      failures: [{ siteId: 'b', reason: 'diverged', message: 'loss is NaN' }],
      refusals: [
        { siteId: 'e', round: 3, task: 'train', reason: 'not-approved', message: 'not approved here', studyHash: 'h', reportedAt: '' },
        { siteId: 'a', round: 3, task: 'evaluate', reason: 'metrics-not-shared', message: 'policy', studyHash: 'h', reportedAt: '' },
      ],
    });
    expect(siteRoundRows(study([current], ['d']), current)).toEqual([
      { siteId: 'a', state: 'reported', detail: '' },
      { siteId: 'b', state: 'failed', detail: 'diverged: loss is NaN' },
      { siteId: 'c', state: 'assigned', detail: 'training or uploading' },
      { siteId: 'd', state: 'dropped', detail: 'dropped from the study' },
      { siteId: 'e', state: 'refused', detail: 'not-approved: not approved here' },
    ]);
  });

  it('charts loss per site with a sample-weighted global, and evaluation figures per site and overall', () => {
    const metric = (siteId: string, loss: number, samples: number | null) => ({ siteId, kind: 'train', loss, accuracy: 0.5, samples });
    const figures = (accuracy: number) => ({ accuracy, balancedAccuracy: accuracy, sensitivity: null, specificity: null, f1: null, auc: accuracy });
    const rounds = [
      round({ number: 1, status: 'closed', metrics: [metric('a', 1, 30), metric('b', 2, 10)], evaluation: null }),
      round({
        number: 2,
        status: 'closed',
        metrics: [metric('a', 0.5, null), metric('b', 1, 10)],
        evaluation: {
          requestedSites: ['a', 'b'],
          pendingSites: [],
          refusedSites: [],
          sites: [{ siteId: 'a', shared: 'figures', samples: null, confusion: null, ...figures(0.8) }],
          overall: { sites: 1, method: 'site-mean', samples: null, confusion: null, ...figures(0.8) },
        },
      }),
    ];
    const loss = metricData(study(rounds), 'loss')!;
    expect(loss.rounds).toEqual([1, 2]);
    // Round 1: (1*30 + 2*10) / 40; round 2: a withholds its count, so the plain mean.
    expect(loss.series).toEqual([
      { label: 'a', values: [1, 0.5] },
      { label: 'b', values: [2, 1] },
      { label: 'global', values: [1.25, 0.75] },
    ]);
    const auc = metricData(study(rounds), 'auc')!;
    expect(auc.series).toEqual([
      { label: 'a', values: [null, 0.8] },
      { label: 'global', values: [null, 0.8] },
    ]);
    expect(metricData(study([round({})]), 'loss')).toBeNull();
  });
});
