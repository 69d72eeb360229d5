import type { EvaluationCounts } from './classification.js';

/**
 * Coarsens score histograms so that no bin gives away less than `minCount` images: adjacent bins are merged left
 * to right until a run holds at least `minCount` (a short last run joins the one before), and each run's images are
 * reported in its middle bin. Bins stay on the study's grid, so sites' reports still add up; a class with fewer
 * than `minCount` images in all goes into one bin, which says no more than the confusion matrix already does. The
 * ROC curve loses resolution only where the data is thin.
 */
export function coarsenHistogram(histogram: readonly number[], minCount: number): number[] {
  if (!Number.isInteger(minCount) || minCount < 1) throw new RangeError(`minCount must be an integer >= 1, got ${minCount}`);
  const out = new Array<number>(histogram.length).fill(0);
  const runs: Array<{ start: number; end: number; count: number }> = [];
  let start = -1;
  let count = 0;
  for (let b = 0; b < histogram.length; b++) {
    const value = histogram[b] ?? 0;
    if (value === 0) continue;
    if (start < 0) start = b;
    count += value;
    if (count >= minCount) {
      runs.push({ start, end: b, count });
      start = -1;
      count = 0;
    }
  }
  if (count > 0) {
    const last = runs.pop();
    runs.push(last ? { start: last.start, end: histogram.length - 1, count: last.count + count } : { start, end: histogram.length - 1, count });
  }
  for (const run of runs) {
    const end = lastNonEmpty(histogram, run.start, run.end);
    out[Math.floor((run.start + end) / 2)]! += run.count;
  }
  return out;
}

function lastNonEmpty(histogram: readonly number[], start: number, end: number): number {
  for (let b = end; b > start; b--) if ((histogram[b] ?? 0) > 0) return b;
  return start;
}

/** Every class's positive and negative histogram coarsened to `minCount` images per non-empty bin. */
export function coarsenEvaluationCounts(counts: EvaluationCounts, minCount: number): EvaluationCounts {
  const coarsen = (all: readonly number[]): number[] => {
    const out: number[] = [];
    for (let c = 0; c < counts.classes; c++) out.push(...coarsenHistogram(all.slice(c * counts.bins, (c + 1) * counts.bins), minCount));
    return out;
  };
  return { ...counts, confusion: [...counts.confusion], positives: coarsen(counts.positives), negatives: coarsen(counts.negatives) };
}
