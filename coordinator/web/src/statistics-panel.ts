import { h, notice, table } from './dom.js';
import type { StudyStatus } from './types.js';

type Statistics = NonNullable<StudyStatus['statistics']>;

const number = (value: number | null, digits = 3): string => (value === null ? '-' : value.toFixed(digits));

/**
 * The dataset overview of a study with statistics: the consortium's totals per feature (images, mean, standard
 * deviation, bounds, quantiles) and each feature's histogram as a row of bars. Only these totals were ever decrypted;
 * no site's own figures exist outside it.
 */
export function statisticsPanel(study: StudyStatus): HTMLElement | null {
  if (!study.definition.statistics) return null;
  const stats = study.statistics;
  const body = stats ? [summaryTable(stats), ...stats.features.map((f) => histogram(f))] : [h('p', { class: 'empty' }, 'The statistics round has not been decrypted and reported yet.')];
  const mismatch = stats && stats.mismatchedSites.length > 0 ? notice(`${stats.mismatchedSites.join(', ')} decrypted other totals than these: check those sites' model caches.`) : null;
  return h('section', { class: 'card', id: 'statistics' }, h('h2', {}, 'Dataset statistics (consortium totals)'), mismatch, body);
}

function summaryTable(stats: Statistics): HTMLTableElement {
  const q = (f: Statistics['features'][number], at: number): string => number(f.quantiles.find((x) => Math.abs(x.q - at) < 1e-9)?.value ?? null);
  return table(
    ['Feature', 'Images', 'Mean', 'Std', 'Min ≥', 'Max ≤', 'P05', 'Median', 'P95'],
    stats.features.map((f) =>
      h(
        'tr',
        { 'data-feature': f.feature },
        h('td', {}, f.feature),
        h('td', { class: 'num' }, f.units),
        ...[number(f.mean, 4), number(f.std, 4), number(f.minAtLeast), number(f.maxAtMost), q(f, 0.05), q(f, 0.5), q(f, 0.95)].map((v) => h('td', { class: 'num' }, v)),
      ),
    ),
    { class: 'figures', id: 'statistics-figures' },
  );
}

/** Bars set through the CSSOM: the dashboard's content security policy refuses inline style attributes. */
function histogram(feature: Statistics['features'][number]): HTMLElement {
  const most = Math.max(1, ...feature.histogram.counts);
  const bars = feature.histogram.counts.map((n, b) => {
    const bar = h('span', { class: 'histogram-bar', title: `${number(feature.histogram.edges[b] ?? null)}–${number(feature.histogram.edges[b + 1] ?? null)}: ${n}` });
    bar.style.height = `${((n / most) * 100).toFixed(1)}%`;
    return bar;
  });
  return h('figure', { class: 'histogram', 'data-feature': feature.feature }, h('div', { class: 'histogram-bars' }, bars), h('figcaption', {}, `${feature.feature}: ${feature.count} values`));
}
