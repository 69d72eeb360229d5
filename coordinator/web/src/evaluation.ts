import { api, describeError } from './api.js';
import { SITE_COLOURS } from './charts.js';
import { h, notice, replace, table } from './dom.js';
import { formatFraction } from './format.js';
import { drawRoc, mergeCounts, rocCurves } from './roc.js';
import { segmentationElements } from './segmentation-evaluation.js';
import type { EvaluationCounts, EvaluationFigures, StudyEvaluation, StudyStatus } from './types.js';

type Round = StudyEvaluation['rounds'][number];
const POOLED = '(all sites)';

/**
 * The federated evaluation of one round: the figures per site and overall, a ROC curve and a confusion matrix.
 * Both are computed here from the counts sites shared (GET /evaluation): the merged score histograms give the ROC
 * points, the merged confusion matrix the table. Sites that share only figures (policy shareMetrics aggregate)
 * send no counts, so for them there is nothing to draw.
 */
export class EvaluationPanel {
  readonly element: HTMLElement;
  private readonly roundSelect = h('select', { id: 'evaluation-round', 'aria-label': 'Round' });
  private readonly scopeSelect = h('select', { id: 'evaluation-scope', 'aria-label': 'Sites' });
  private readonly body = h('div', { class: 'evaluation-body' });
  /** Hidden until there is a round to choose. */
  private readonly controls = h('div', { class: 'controls', hidden: true }, h('label', {}, 'Round ', this.roundSelect), h('label', {}, 'Sites ', this.scopeSelect));
  private data: StudyEvaluation | null = null;
  private signature = '';
  private loading = false;
  private again = false;

  constructor(private readonly studyId: string) {
    this.element = h(
      'section',
      { class: 'card', id: 'evaluation' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Federated evaluation'), this.controls),
      this.body,
    );
    this.roundSelect.addEventListener('change', () => {
      this.fillScopes();
      this.render();
    });
    this.scopeSelect.addEventListener('change', () => this.render());
    replace(this.body, h('p', { class: 'empty' }, 'No round has been evaluated yet.'));
  }

  /** Reloads the evaluation when the study's evaluation state changed (a round closed, a site reported). */
  update(study: StudyStatus): void {
    const signature = study.rounds
      .filter((r) => r.evaluation !== null)
      .map((r) => `${r.number}:${r.evaluation?.sites.length}:${r.evaluation?.pendingSites.length}`)
      .join(',');
    if (signature === this.signature || signature === '') return;
    this.signature = signature;
    this.load();
  }

  private load(): void {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    api<StudyEvaluation>('GET', `/studies/${encodeURIComponent(this.studyId)}/evaluation`)
      .then((data) => {
        const latest = String(data.rounds.at(-1)?.number ?? '');
        const selected = this.roundSelect.value;
        const followLatest = !this.data || selected === '' || selected === String(this.data.rounds.at(-1)?.number ?? '');
        this.data = data;
        this.controls.hidden = data.rounds.length === 0;
        replace(this.roundSelect, data.rounds.map((r) => h('option', { value: String(r.number) }, `round ${r.number}`)));
        this.roundSelect.value = followLatest ? latest : selected;
        this.fillScopes();
        this.render();
      })
      .catch((error: unknown) => replace(this.body, notice(describeError(error))))
      .finally(() => {
        this.loading = false;
        if (this.again) {
          this.again = false;
          this.load();
        }
      });
  }

  private round(): Round | null {
    return this.data?.rounds.find((r) => String(r.number) === this.roundSelect.value) ?? null;
  }

  private fillScopes(): void {
    const round = this.round();
    const previous = this.scopeSelect.value;
    const scopes = round ? [POOLED, ...round.sites.filter((s) => s.counts).map((s) => s.siteId)] : [POOLED];
    replace(this.scopeSelect, scopes.map((s) => h('option', { value: s }, s)));
    this.scopeSelect.value = scopes.includes(previous) ? previous : POOLED;
  }

  private countsOf(round: Round): { counts: EvaluationCounts | null; why: string } {
    const scope = this.scopeSelect.value;
    if (scope !== POOLED) {
      const site = round.sites.find((s) => s.siteId === scope);
      return site?.counts ? { counts: site.counts, why: '' } : { counts: null, why: `${scope} shared figures only, not counts.` };
    }
    if (round.sites.length === 0) return { counts: null, why: 'No site has reported its evaluation of this round yet.' };
    const withCounts = round.sites.filter((s) => s.counts).map((s) => s.counts!);
    if (withCounts.length < round.sites.length) {
      const figuresOnly = round.sites.filter((s) => !s.counts).map((s) => s.siteId);
      return { counts: null, why: `Not every site shared counts (${figuresOnly.join(', ')} shared figures only, under its shareMetrics policy), so there is no pooled ROC curve or confusion matrix.` };
    }
    return { counts: mergeCounts(withCounts), why: '' };
  }

  private render(): void {
    const data = this.data;
    const round = this.round();
    if (!data || !round) {
      replace(this.body, h('p', { class: 'empty' }, 'No round has been evaluated yet.'));
      return;
    }
    const status = [
      round.pendingSites.length > 0 ? `waiting for ${round.pendingSites.join(', ')}` : null,
      round.refusedSites.length > 0 ? `refused by ${round.refusedSites.map((r) => `${r.siteId} (${r.reason})`).join(', ')}` : null,
    ].filter((s): s is string => s !== null);
    const statusLine = status.length > 0 ? h('p', { class: 'muted' }, status.join('; ')) : null;
    if (round.overall?.segmentation) {
      replace(this.body, statusLine, segmentationElements(round));
      return;
    }
    const { counts, why } = this.countsOf(round);
    const visuals = counts
      ? h('div', { class: 'evaluation-visuals' }, this.rocElement(counts, data.classNames), confusionElement(counts, data.classNames))
      : notice(why, 'info', { id: 'evaluation-missing' });
    replace(this.body, statusLine, figuresTable(round), visuals);
  }

  private rocElement(counts: EvaluationCounts, classNames: readonly string[]): HTMLElement {
    const curves = rocCurves(counts, classNames, ['#2563eb', ...SITE_COLOURS.slice(1)]);
    if (curves.length === 0) return h('figure', { id: 'roc' }, notice('Every held-out image is of one class: no ROC curve.', 'info'));
    const canvas = h('canvas', { 'aria-label': 'ROC curve', role: 'img' });
    const element = h('figure', { id: 'roc', 'data-curves': curves.length, 'data-points': curves.reduce((n, c) => n + c.points.length, 0) }, canvas);
    element.dataset.auc = curves.map((c) => (c.auc ?? 0).toFixed(4)).join(',');
    drawRoc(canvas, curves);
    element.appendChild(h('figcaption', {}, `ROC from ${counts.bins} score bins per class.`));
    return element;
  }
}

function figuresTable(round: Round): HTMLTableElement {
  const cells = (f: EvaluationFigures) =>
    [f.accuracy, f.balancedAccuracy, f.sensitivity, f.specificity, f.f1].map((v) => h('td', { class: 'num' }, formatFraction(v))).concat(h('td', { class: 'num' }, f.auc === null ? '-' : f.auc.toFixed(3)));
  const rows = round.sites.map((s) =>
    h('tr', { 'data-site': s.siteId }, h('td', {}, s.siteId), h('td', { class: 'num' }, s.samples ?? '-'), ...cells(s), h('td', {}, s.shared)),
  );
  if (round.overall) {
    const o = round.overall;
    rows.push(h('tr', { class: 'total', 'data-site': 'global' }, h('td', {}, 'global'), h('td', { class: 'num' }, o.samples ?? '-'), ...cells(o), h('td', {}, o.method)));
  }
  return table(['Site', 'Images', 'Accuracy', 'Balanced acc.', 'Sensitivity', 'Specificity', 'F1', 'AUC', 'From'], rows, { class: 'figures' });
}

/** Rows: true class; columns: predicted class; each cell its count and the share of its row. */
function confusionElement(counts: EvaluationCounts, classNames: readonly string[]): HTMLElement {
  const k = counts.classes;
  const name = (c: number): string => classNames[c] ?? `class ${c}`;
  const rows: HTMLTableRowElement[] = [];
  for (let t = 0; t < k; t++) {
    const row = counts.confusion.slice(t * k, (t + 1) * k);
    const total = row.reduce((a, b) => a + b, 0);
    rows.push(
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, name(t)),
        row.map((n, p) => {
          const share = total > 0 ? n / total : 0;
          const cell = h('td', { class: `cell ${t === p ? 'diagonal' : 'off'}`, 'data-count': n, title: `${n} of ${total} ${name(t)} images predicted ${name(p)}` }, h('strong', {}, n), h('small', {}, formatFraction(total > 0 ? share : null, 0)));
          cell.style.backgroundColor = t === p ? `rgba(37, 99, 235, ${0.08 + share * 0.5})` : `rgba(220, 38, 38, ${share * 0.45})`;
          return cell;
        }),
      ),
    );
  }
  return h(
    'figure',
    { id: 'confusion' },
    h(
      'table',
      { class: 'confusion' },
      h('thead', {}, h('tr', {}, h('th', { class: 'corner' }, 'true ↓ / predicted →'), Array.from({ length: k }, (_, p) => h('th', { scope: 'col' }, name(p))))),
      h('tbody', {}, rows),
    ),
    h('figcaption', {}, `Confusion matrix: ${counts.confusion.reduce((a, b) => a + b, 0)} held-out images.`),
  );
}
