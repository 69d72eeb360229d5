import { h, notice, table } from './dom.js';
import { formatFraction } from './format.js';
import type { StudyEvaluation } from './types.js';

type Round = StudyEvaluation['rounds'][number];
type SegmentationView = NonNullable<NonNullable<Round['overall']>['segmentation']>;

/**
 * A segmentation study's federated evaluation: Dice, IoU, sensitivity and precision per site and for all sites, per
 * segment from the pooled pixel counts, and how the held-out images' Dice spread (the summed per-image histograms).
 * Nothing per image ever reaches the coordinator, so there is nothing finer to draw.
 */
export function segmentationElements(round: Round): HTMLElement[] {
  const cells = (s: SegmentationView | undefined) => [s?.dice, s?.iou, s?.sensitivity, s?.precision].map((v) => h('td', { class: 'num' }, formatFraction(v ?? null)));
  const rows = round.sites.map((s) => h('tr', { 'data-site': s.siteId }, h('td', {}, s.siteId), h('td', { class: 'num' }, s.samples ?? '-'), ...cells(s.segmentation), h('td', {}, s.shared)));
  const overall = round.overall;
  if (overall) rows.push(h('tr', { class: 'total', 'data-site': 'global' }, h('td', {}, 'global'), h('td', { class: 'num' }, overall.samples ?? '-'), ...cells(overall.segmentation), h('td', {}, overall.method)));
  const figures = table(['Site', 'Images', 'Dice', 'IoU', 'Sensitivity', 'Precision', 'From'], rows, { class: 'figures', id: 'segmentation-figures' });
  const pooled = overall?.segmentation;
  if (!pooled?.perClass || !pooled.diceHistogram) {
    return [figures, notice('Not every site shared counts (under its shareMetrics policy), so there are no per-segment figures or Dice histogram for all sites.', 'info', { id: 'evaluation-missing' })];
  }
  const perClass = table(
    ['Segment', 'Dice', 'IoU', 'Sensitivity', 'Precision'],
    pooled.perClass.map((c) => h('tr', { 'data-segment': c.className }, h('td', {}, c.className), ...[c.dice, c.iou, c.sensitivity, c.precision].map((v) => h('td', { class: 'num' }, formatFraction(v))))),
    { class: 'figures', id: 'segment-figures' },
  );
  return [figures, h('div', { class: 'evaluation-visuals' }, perClass, diceHistogram(pooled.diceHistogram, pooled.perClass.map((c) => c.className)))];
}

/** One row of bars per segment: held-out images per Dice bin, bar length relative to the fullest bin. */
function diceHistogram(histogram: { bins: number; counts: number[][] }, segments: readonly string[]): HTMLElement {
  const most = Math.max(1, ...histogram.counts.flat());
  const edge = (b: number): string => (b / histogram.bins).toFixed(1);
  const rows = histogram.counts.flatMap((counts, c) =>
    counts.map((n, b) =>
      h(
        'tr',
        { 'data-segment': segments[c] ?? '', 'data-bin': b },
        h('th', { scope: 'row' }, b === 0 ? (segments[c] ?? '') : ''),
        h('td', { class: 'num' }, `${edge(b)}–${edge(b + 1)}`),
        h('td', {}, bar(n / most)),
        h('td', { class: 'num' }, n),
      ),
    ),
  );
  return h(
    'figure',
    { id: 'dice-histogram' },
    h('table', { class: 'figures' }, h('thead', {}, h('tr', {}, h('th', {}, 'Segment'), h('th', {}, 'Dice'), h('th', {}, ''), h('th', {}, 'Images'))), h('tbody', {}, rows)),
    h('figcaption', {}, 'Held-out images per Dice bin, summed over the sites that shared counts.'),
  );
}

/** Set through the CSSOM: the dashboard's content security policy refuses inline style attributes. */
function bar(fraction: number): HTMLSpanElement {
  const span = h('span', { class: 'dice-bar' });
  span.style.width = `${(fraction * 10).toFixed(2)}em`;
  return span;
}
