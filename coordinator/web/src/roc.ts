import type { EvaluationCounts } from './types.js';

export interface RocCurve {
  label: string;
  colour: string;
  /** [false positive rate, true positive rate], from (0, 0) to (1, 1). */
  points: Array<[number, number]>;
  /** Area under the curve (trapezoids over the binned scores; ties in a bin count one half, as the server's AUC). */
  auc: number | null;
}

/** Element-wise sum: the consortium's counts are the sum of the sites' counts. */
export function mergeCounts(parts: readonly EvaluationCounts[]): EvaluationCounts | null {
  const first = parts[0];
  if (!first || parts.some((p) => p.classes !== first.classes || p.bins !== first.bins)) return null;
  const sum = (key: 'confusion' | 'positives' | 'negatives'): number[] => first[key].map((_, i) => parts.reduce((n, p) => n + (p[key][i] ?? 0), 0));
  return { classes: first.classes, bins: first.bins, confusion: sum('confusion'), positives: sum('positives'), negatives: sum('negatives') };
}

/**
 * The ROC curve of class `c` against the rest, from the score histograms sites report. Bins ascend with the score,
 * so lowering the threshold one bin at a time, from the top, adds that bin's positives to the true positives and its
 * negatives to the false positives: one point per bin that holds any image. No per-image score is needed.
 */
export function rocCurve(counts: EvaluationCounts, c: number): Array<[number, number]> | null {
  const { bins } = counts;
  const positives = counts.positives.slice(c * bins, (c + 1) * bins);
  const negatives = counts.negatives.slice(c * bins, (c + 1) * bins);
  const p = positives.reduce((a, b) => a + b, 0);
  const n = negatives.reduce((a, b) => a + b, 0);
  if (p === 0 || n === 0) return null;
  const points: Array<[number, number]> = [[0, 0]];
  let tp = 0;
  let fp = 0;
  for (let b = bins - 1; b >= 0; b--) {
    const pos = positives[b] ?? 0;
    const neg = negatives[b] ?? 0;
    if (pos === 0 && neg === 0) continue;
    tp += pos;
    fp += neg;
    points.push([fp / n, tp / p]);
  }
  return points;
}

export function areaUnder(points: ReadonlyArray<[number, number]>): number {
  let area = 0;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1]!;
    const [x1, y1] = points[i]!;
    area += ((x1 - x0) * (y0 + y1)) / 2;
  }
  return area;
}

/** Curves to draw: the positive class for a binary study, every class against the rest otherwise. */
export function rocCurves(counts: EvaluationCounts, classNames: readonly string[], colours: readonly string[]): RocCurve[] {
  const classes = counts.classes === 2 ? [1] : Array.from({ length: counts.classes }, (_, c) => c);
  const curves: RocCurve[] = [];
  for (const c of classes) {
    const points = rocCurve(counts, c);
    if (points === null) continue;
    const name = classNames[c] ?? `class ${c}`;
    const label = counts.classes === 2 ? `${name} vs ${classNames[0] ?? 'class 0'}` : `${name} vs rest`;
    curves.push({ label, colour: colours[curves.length % colours.length] ?? '#333', points, auc: areaUnder(points) });
  }
  return curves;
}

/** Draws the curves on a square canvas: axes, grid, chance diagonal, each curve, a legend with its AUC. */
export function drawRoc(canvas: HTMLCanvasElement, curves: readonly RocCurve[], sizeCss = 360): void {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(sizeCss * ratio);
  canvas.height = Math.round(sizeCss * ratio);
  canvas.style.width = `${sizeCss}px`;
  canvas.style.height = `${sizeCss}px`;
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, sizeCss, sizeCss);
  const left = 52;
  const top = 14;
  const side = sizeCss - left - 14;
  const bottom = top + side;
  const x = (v: number): number => left + v * side;
  const y = (v: number): number => bottom - v * side;

  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#4b5563';
  ctx.strokeStyle = '#e5e7eb';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 5; i++) {
    const v = i / 5;
    ctx.beginPath();
    ctx.moveTo(x(v), top);
    ctx.lineTo(x(v), bottom);
    ctx.moveTo(left, y(v));
    ctx.lineTo(left + side, y(v));
    ctx.stroke();
    ctx.textAlign = 'center';
    ctx.fillText(v.toFixed(1), x(v), bottom + 14);
    ctx.textAlign = 'right';
    ctx.fillText(v.toFixed(1), left - 6, y(v) + 4);
  }
  ctx.strokeStyle = '#9ca3af';
  ctx.strokeRect(left, top, side, side);
  ctx.setLineDash([4, 4]);
  ctx.beginPath();
  ctx.moveTo(x(0), y(0));
  ctx.lineTo(x(1), y(1));
  ctx.stroke();
  ctx.setLineDash([]);

  ctx.textAlign = 'center';
  ctx.fillStyle = '#374151';
  ctx.fillText('false positive rate (1 − specificity)', left + side / 2, bottom + 30);
  ctx.save();
  ctx.translate(14, top + side / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('true positive rate (sensitivity)', 0, 0);
  ctx.restore();

  for (const curve of curves) {
    ctx.strokeStyle = curve.colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    curve.points.forEach(([fpr, tpr], i) => (i === 0 ? ctx.moveTo(x(fpr), y(tpr)) : ctx.lineTo(x(fpr), y(tpr))));
    ctx.stroke();
  }
  ctx.textAlign = 'left';
  curves.forEach((curve, i) => {
    const ly = bottom - 10 - (curves.length - 1 - i) * 16;
    ctx.fillStyle = curve.colour;
    ctx.fillRect(x(0.42), ly - 8, 12, 3);
    ctx.fillStyle = '#111827';
    ctx.fillText(`${curve.label}  AUC ${curve.auc === null ? '-' : curve.auc.toFixed(3)}`, x(0.42) + 16, ly - 3);
  });
}
