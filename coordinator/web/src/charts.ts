import type uPlot from 'uplot';
import { h, replace } from './dom.js';
import type { RoundView, StudyStatus } from './types.js';

declare global {
  interface Window {
    /** uPlot's browser build (uPlot.iife.min.js, loaded by index.html before the modules) sets this. */
    uPlot?: typeof uPlot;
  }
}

/** Distinct, print-safe colours for sites; "global" is always the dark line. */
export const SITE_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const GLOBAL_COLOUR = '#111827';

/** The same colour for a site in every chart of a study: by its place among the study's sites. */
export function siteColours(siteIds: readonly string[]): Map<string, string> {
  return new Map([...siteIds].sort().map((id, i) => [id, SITE_COLOURS[i % SITE_COLOURS.length] ?? '#888']));
}

type MetricKey = 'loss' | 'accuracy' | 'balancedAccuracy' | 'auc';

interface Series {
  label: string;
  values: Array<number | null>;
}

interface ChartData {
  rounds: number[];
  series: Series[];
  caption: string;
}

const TITLES: Record<MetricKey, string> = { loss: 'Loss', accuracy: 'Accuracy', balancedAccuracy: 'Balanced accuracy', auc: 'AUC (ROC)' };

const mean = (values: number[]): number | null => (values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length);

/**
 * Per-round series of one metric: one per site and "global". Loss comes from what sites report after local
 * training (the global value is the sample-weighted mean where sites share sample counts, the plain mean where they
 * do not). Accuracy, balanced accuracy and AUC come from the federated evaluation of each round's published model on
 * the sites' held-out data ("global" is the coordinator's figure for all sites together).
 */
export function metricData(study: StudyStatus, key: MetricKey): ChartData | null {
  const rounds = study.rounds.filter((r) => r.metrics.length > 0 || r.evaluation !== null);
  if (rounds.length === 0) return null;
  const numbers = rounds.map((r) => r.number);
  if (key === 'loss' || (key === 'accuracy' && !rounds.some((r) => (r.evaluation?.sites.length ?? 0) > 0))) {
    const kind = rounds.some((r) => r.metrics.some((m) => m.kind === 'validation')) ? 'validation' : 'train';
    const field = key === 'loss' ? 'loss' : 'accuracy';
    const sites = [...new Set(rounds.flatMap((r) => r.metrics.filter((m) => m.kind === kind).map((m) => m.siteId)))].sort();
    const at = (round: RoundView, site: string): number | null => round.metrics.find((m) => m.kind === kind && m.siteId === site)?.[field] ?? null;
    const global = rounds.map((round) => {
      const own = round.metrics.filter((m) => m.kind === kind);
      if (own.length === 0) return null;
      const total = own.reduce((n, m) => n + (m.samples ?? 0), 0);
      return own.every((m) => m.samples !== null) && total > 0 ? own.reduce((s, m) => s + m[field] * (m.samples ?? 0), 0) / total : mean(own.map((m) => m[field]));
    });
    return {
      rounds: numbers,
      series: [...sites.map((site) => ({ label: site, values: rounds.map((r) => at(r, site)) })), { label: 'global', values: global }],
      caption: `${kind === 'validation' ? 'Validation' : 'Training'} ${field} each site reported for its local model; global: the mean over sites (weighted by images where sites share counts).`,
    };
  }
  const evaluated = rounds.filter((r) => r.evaluation !== null);
  if (!evaluated.some((r) => (r.evaluation?.sites.length ?? 0) > 0)) return null;
  const sites = [...new Set(evaluated.flatMap((r) => r.evaluation?.sites.map((s) => s.siteId) ?? []))].sort();
  return {
    rounds: numbers,
    series: [
      ...sites.map((site) => ({ label: site, values: rounds.map((r) => r.evaluation?.sites.find((s) => s.siteId === site)?.[key] ?? null) })),
      { label: 'global', values: rounds.map((r) => r.evaluation?.overall?.[key] ?? null) },
    ],
    caption: "The round's published model scored on each site's held-out data (federated evaluation); global: all sites together.",
  };
}

/** A chart card that keeps one uPlot instance and feeds it new data as the study moves. */
class MetricChart {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly caption: HTMLElement;
  private plot: uPlot | null = null;
  private labels = '';
  private readonly resize = new ResizeObserver(() => this.plot?.setSize(this.size()));

  constructor(private readonly key: MetricKey) {
    this.body = h('div', { class: 'chart-body' });
    this.caption = h('p', { class: 'caption' });
    this.element = h('section', { class: 'chart card', 'data-chart': key }, h('h3', {}, TITLES[key]), this.body, this.caption);
    this.resize.observe(this.body);
  }

  update(study: StudyStatus, colours: ReadonlyMap<string, string>): void {
    const data = metricData(study, this.key);
    if (data === null) {
      this.destroyPlot();
      replace(this.body, h('p', { class: 'empty' }, this.key === 'loss' ? 'No round has reported yet.' : 'No federated evaluation yet.'));
      this.caption.textContent = '';
      return;
    }
    this.caption.textContent = data.caption;
    const aligned: uPlot.AlignedData = [data.rounds, ...data.series.map((s) => s.values)];
    const labels = data.series.map((s) => s.label).join('\n');
    if (this.plot && labels === this.labels) {
      this.plot.setData(aligned);
      return;
    }
    this.destroyPlot();
    const UPlot = window.uPlot;
    if (!UPlot) {
      replace(this.body, h('p', { class: 'empty' }, 'The chart library did not load.'));
      return;
    }
    replace(this.body);
    this.labels = labels;
    this.element.dataset.series = data.series.map((s) => s.label).join(',');
    this.plot = new UPlot(this.options(data.series, study.totalRounds, colours), aligned, this.body);
  }

  dispose(): void {
    this.resize.disconnect();
    this.destroyPlot();
  }

  private destroyPlot(): void {
    this.plot?.destroy();
    this.plot = null;
    this.labels = '';
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(240, this.body.clientWidth), height: 200 };
  }

  private options(series: Series[], totalRounds: number, colours: ReadonlyMap<string, string>): uPlot.Options {
    const percent = this.key !== 'loss';
    return {
      ...this.size(),
      scales: {
        x: { time: false, range: () => (totalRounds > 1 ? [1, totalRounds] : [0.5, 1.5]) },
        y: percent ? { range: () => [0, 1] } : { auto: true },
      },
      axes: [
        { label: 'round', size: 40, incrs: [1, 2, 5, 10, 20, 50, 100], values: (_u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : '')) },
        { size: 50, values: (_u, splits) => splits.map((v) => (percent ? `${Math.round(v * 100)}%` : v.toPrecision(3))) },
      ],
      series: [
        { label: 'round', value: (_u, v) => (v === null || v === undefined ? '' : String(v)) },
        ...series.map((s): uPlot.Series => {
          const global = s.label === 'global';
          const stroke = global ? GLOBAL_COLOUR : (colours.get(s.label) ?? '#888');
          return {
            label: s.label,
            stroke,
            width: global ? 2.5 : 1.5,
            spanGaps: true,
            points: { show: true, size: global ? 7 : 5, fill: stroke },
            // Values show while the cursor is over a round; otherwise the legend is just the names.
            value: (_u, v) => (v === null || v === undefined ? '' : percent ? `${(v * 100).toFixed(1)}%` : v.toFixed(4)),
          };
        }),
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
  }
}

/** The four metric charts of a study, updated in place as new status arrives. */
export class MetricCharts {
  readonly element: HTMLElement;
  private readonly charts: MetricChart[];

  constructor() {
    this.charts = (['loss', 'accuracy', 'balancedAccuracy', 'auc'] as const).map((key) => new MetricChart(key));
    this.element = h('div', { class: 'chart-grid', id: 'charts' }, this.charts.map((c) => c.element));
  }

  update(study: StudyStatus): void {
    const colours = siteColours(study.sites.map((s) => s.id));
    for (const chart of this.charts) chart.update(study, colours);
  }

  dispose(): void {
    for (const chart of this.charts) chart.dispose();
  }
}
