import { api, describeError, download } from './api.js';
import { MetricCharts } from './charts.js';
import { badge, h, notice, replace, statusTone, table } from './dom.js';
import { EvaluationPanel } from './evaluation.js';
import { statisticsPanel } from './statistics-panel.js';
import { formatBytes, formatPrivacySettings, formatSeconds, formatTime, shortHash } from './format.js';
import { deadlineText, progressBars, roundSitesTable } from './round-progress.js';
import { studyControls } from './study-controls.js';
import { watchStudy, type StreamState } from './study-stream.js';
import type { ModelView, SiteActivity, SiteActivityView, SiteView, StudyStatus } from './types.js';
import { CAN, type AppContext, type View } from './view.js';

const STATE_TONE: Record<StreamState, 'ok' | 'warn' | 'info' | 'muted'> = { connecting: 'info', live: 'ok', reconnecting: 'warn', polling: 'warn', ended: 'muted' };

/**
 * One study, live: its status over the event stream (GET /studies/:id/events), progress of the rounds and of the
 * round in progress, each site's state in it, metric curves, the federated evaluation and the round history.
 */
export function studyDetailView(context: AppContext, studyId: string): View {
  const liveBadge = badge('connecting', 'info');
  liveBadge.id = 'live-state';
  const header = h('div', { class: 'view-head study-head' }, h('h1', { id: 'study-name' }, 'Study'), liveBadge);
  const summary = h('section', { class: 'card', id: 'study-summary' }, h('p', { class: 'muted' }, 'Loading…'));
  const deadline = h('span', { id: 'deadline' });
  const progress = h('div', { id: 'progress-bars' });
  const roundSites = h('div', { id: 'round-sites-wrap' });
  const charts = new MetricCharts();
  const evaluation = new EvaluationPanel(studyId);
  const rounds = h('div', { id: 'rounds-wrap' });
  const refusals = h('div', { id: 'refusals-wrap' });
  const statistics = h('div', { id: 'statistics-wrap' });
  let statisticsSignature = '';
  const problem = h('div', { id: 'study-problem' });

  let study: StudyStatus | null = null;
  const sites = new Map<string, SiteView>();
  const activity = new Map<string, SiteActivityView>();
  let activitySignature = '';
  let summarySignature = '';

  const renderRoundSites = (): void => {
    if (study) replace(roundSites, roundSitesTable(study, sites, activity));
  };
  const loadActivity = (current: StudyStatus): void => {
    const signature = current.rounds.map((r) => `${r.number}:${r.reportedSites.length}`).join(',');
    if (signature === activitySignature) return;
    activitySignature = signature;
    api<SiteActivity>('GET', `/sites/activity?studyId=${encodeURIComponent(studyId)}`)
      .then((result) => {
        activity.clear();
        for (const site of result.sites) activity.set(site.siteId, site);
        renderRoundSites();
      })
      .catch(() => undefined); // only extra figures: the table stands without them
  };

  const render = (current: StudyStatus): void => {
    study = current;
    replace(header.querySelector('h1') ?? header, current.name);
    // Only when it changed: re-rendering would wipe a reason the user is typing next to the buttons.
    const signature = JSON.stringify([current.status, current.error, current.startedAt, current.finishedAt, current.specHash, current.name]);
    if (signature !== summarySignature) {
      summarySignature = signature;
      replace(summary, summaryElement(context, current, render));
    }
    deadline.textContent = deadlineText(current);
    replace(progress, progressBars(current, deadline));
    renderRoundSites();
    loadActivity(current);
    charts.update(current);
    evaluation.update(current);
    replace(rounds, roundsTable(context, current));
    replace(refusals, refusalsTable(current));
    const statisticsNow = `${current.statistics?.sha256 ?? ''}:${current.statistics?.mismatchedSites.length ?? 0}`;
    if (statisticsNow !== statisticsSignature) {
      statisticsSignature = statisticsNow;
      replace(statistics, statisticsPanel(current));
    }
  };

  const stream = watchStudy(studyId, {
    status: render,
    sites: (list) => {
      sites.clear();
      for (const site of list) sites.set(site.id, site);
      renderRoundSites();
    },
    state: (state, detail) => {
      liveBadge.className = `badge badge-${STATE_TONE[state]}`;
      liveBadge.textContent = state === 'live' ? '● live' : state;
      liveBadge.title = detail;
      liveBadge.dataset.state = state;
    },
    fatal: (error) => {
      replace(problem, notice(describeError(error)));
      if (!study) replace(summary, h('p', { class: 'empty' }, 'Nothing to show.'));
    },
  });
  const ticker = window.setInterval(() => {
    if (study) deadline.textContent = deadlineText(study);
  }, 1000);

  const element = h(
    'div',
    { class: 'view', id: 'study-view', 'data-study': studyId },
    h('p', { class: 'breadcrumb' }, h('a', { href: '#/studies' }, '← Studies')),
    header,
    problem,
    summary,
    h('section', { class: 'card', id: 'progress' }, h('h2', {}, 'Progress'), progress, roundSites),
    h('h2', { class: 'section-title' }, 'Metrics per round'),
    charts.element,
    evaluation.element,
    statistics,
    h('section', { class: 'card' }, h('h2', {}, 'Rounds'), rounds),
    h('section', { class: 'card' }, h('h2', {}, 'Site refusals'), refusals),
  );
  return {
    element,
    dispose: () => {
      stream.close();
      window.clearInterval(ticker);
      charts.dispose();
    },
  };
}

function summaryElement(context: AppContext, study: StudyStatus, onChanged: (study: StudyStatus) => void): HTMLElement {
  const def = study.definition;
  const facts: Array<[string, Node | string]> = [
    ['Status', badge(study.status, statusTone(study.status))],
    ['Owner', study.owner ?? '-'],
    ['Model', `${def.model.architecture}, ${def.classNames.length} classes (${def.classNames.join(', ')})`],
    ['Rounds', `${study.totalRounds}, at least ${def.minSites} sites each`],
    ['Aggregation', String(def['aggregation'] ?? 'ckks')],
    ['Differential privacy', h('span', { id: 'study-privacy' }, formatPrivacySettings(def.privacy))],
    ['Created', formatTime(study.createdAt)],
    ['Started', formatTime(study.startedAt)],
    ['Finished', formatTime(study.finishedAt)],
    ['Study hash', h('code', { id: 'study-hash', title: 'What each hospital approves' }, study.specHash)],
  ];
  const approval =
    study.status === 'draft'
      ? h(
          'div',
          { class: 'notice notice-info', id: 'approval-hint' },
          'Before it starts, each hospital approves this exact definition by its hash: ',
          h('code', {}, `federa-site approve ${study.specHash} --config site.yaml`),
        )
      : null;
  return h(
    'div',
    {},
    h('dl', { class: 'facts' }, facts.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]).flat()),
    study.error ? notice(study.error, study.status === 'failed' ? 'error' : 'info', { id: 'study-error' }) : null,
    approval,
    studyControls(context, study, onChanged, { withReason: true }),
    h('details', { class: 'definition' }, h('summary', {}, 'Definition (as sites receive it)'), h('pre', {}, JSON.stringify(def, null, 2))),
  );
}

function downloadButton(study: StudyStatus, round: number, model: ModelView): HTMLElement {
  const button = h('button', { type: 'button', class: 'link', 'data-download': round, title: `SHA-256 ${model.sha256}` }, model.kind === 'weights' ? 'weights' : 'encrypted aggregate');
  button.addEventListener('click', () => {
    button.disabled = true;
    download(`/studies/${encodeURIComponent(study.id)}/models/${round}`, `${study.id}-round-${round}.bin`)
      .catch((error: unknown) => window.alert(describeError(error)))
      .finally(() => (button.disabled = false));
  });
  return button;
}

function roundsTable(context: AppContext, study: StudyStatus): HTMLElement {
  if (study.rounds.length === 0) return h('p', { class: 'empty' }, 'No round has opened yet.');
  const downloads = CAN.downloadModels(context.me.role);
  const rows = study.rounds.map((round) => {
    const seconds = round.closedAt ? (new Date(round.closedAt).getTime() - new Date(round.openedAt).getTime()) / 1000 : null;
    return h(
      'tr',
      { 'data-round': round.number },
      h('td', { class: 'num' }, round.number),
      h('td', {}, badge(round.status, statusTone(round.status))),
      h('td', { class: 'nowrap' }, formatTime(round.openedAt)),
      h('td', { class: 'num' }, formatSeconds(seconds)),
      h('td', { class: 'num' }, `${round.reportedSites.length} / ${round.assignedSites.length}`),
      h('td', { class: 'num' }, round.failures.length + round.refusals.length),
      h('td', { class: 'mono', title: round.model?.sha256 ?? '' }, round.model ? `${shortHash(round.model.sha256, 10)} (${formatBytes(round.model.sizeBytes)})` : '-'),
      downloads ? h('td', {}, round.model ? downloadButton(study, round.number, round.model) : '-') : null,
    );
  });
  const headers = ['#', 'Status', 'Opened', 'Took', 'Updates', 'Failed / refused', 'Published model'];
  return table(downloads ? [...headers, 'Download'] : headers, rows, { id: 'rounds' });
}

function refusalsTable(study: StudyStatus): HTMLElement {
  const failures = study.rounds.flatMap((r) => r.failures.map((f) => ({ round: r.number, siteId: f.siteId, task: 'train (failed)', reason: f.reason, message: f.message })));
  const all = [...study.refusals.map((r) => ({ round: r.round, siteId: r.siteId, task: r.task, reason: r.reason, message: r.message })), ...failures];
  if (all.length === 0) return h('p', { class: 'empty' }, 'No site refused or failed a task of this study.');
  const rows = all
    .sort((a, b) => b.round - a.round || a.siteId.localeCompare(b.siteId))
    .map((r) => h('tr', {}, h('td', { class: 'num' }, r.round), h('td', {}, r.siteId), h('td', {}, r.task), h('td', {}, badge(r.reason, 'bad')), h('td', { class: 'detail' }, r.message)));
  return table(['Round', 'Site', 'Task', 'Reason', 'Message'], rows, { id: 'refusals' });
}
