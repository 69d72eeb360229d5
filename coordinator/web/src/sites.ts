import { api, describeError } from './api.js';
import { badge, h, notice, replace, table } from './dom.js';
import { formatBytes, formatRelative, formatSeconds, formatTime } from './format.js';
import type { SiteActivity, SiteActivityView, SiteIncidentView, SiteView } from './types.js';
import type { AppContext, View } from './view.js';

/** Heartbeats and connections change without any study event: the table refreshes itself at this pace. */
const REFRESH_MS = 10_000;

/**
 * Site health: connection and last heartbeat, what each site runs, the data it loaded (counts only), and what it
 * did in rounds (GET /sites/activity): updates and bytes sent, time from round open to update, refusals, failures.
 */
export function sitesView(_context: AppContext): View {
  const body = h('div', { id: 'sites-body' }, h('p', { class: 'muted' }, 'Loading sites…'));
  const updated = h('span', { class: 'muted', id: 'sites-updated' });
  const refresh = h('button', { type: 'button', class: 'secondary', id: 'refresh-sites' }, 'Refresh');
  const load = (): void => {
    Promise.all([api<SiteView[]>('GET', '/sites'), api<SiteActivity>('GET', '/sites/activity')])
      .then(([sites, activity]) => {
        replace(body, sitesTable(sites, new Map(activity.sites.map((a) => [a.siteId, a]))));
        updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      })
      .catch((error: unknown) => replace(body, notice(describeError(error))));
  };
  refresh.addEventListener('click', load);
  load();
  const timer = window.setInterval(load, REFRESH_MS);
  return {
    element: h(
      'div',
      { class: 'view', id: 'sites-view' },
      h('div', { class: 'view-head' }, h('h1', {}, 'Sites'), h('div', { class: 'controls' }, updated, refresh)),
      h(
        'p',
        { class: 'muted' },
        'Round time: from a round opening to the site\'s update arriving (local training plus upload), median and last. Sent: the bytes of every accepted update (encrypted updates are several times the model size).',
      ),
      h('section', { class: 'card wide' }, body),
    ),
    dispose: () => window.clearInterval(timer),
  };
}

function incident(count: number, last: SiteIncidentView | null): HTMLElement {
  if (count === 0) return h('span', { class: 'muted' }, '0');
  return h(
    'div',
    {},
    badge(String(count), 'bad'),
    last ? h('div', { class: 'small', title: `${last.message} (study ${last.studyId}, round ${last.round}, ${formatTime(last.at)})` }, `last: ${last.reason}`) : null,
  );
}

function sitesTable(sites: SiteView[], activity: ReadonlyMap<string, SiteActivityView>): HTMLElement {
  if (sites.length === 0) return h('p', { class: 'empty' }, 'No site has registered yet.');
  const rows = sites.map((site) => {
    const act = activity.get(site.id);
    const dataset = site.dataset;
    const classes = dataset ? Object.entries(dataset.byClass).map(([name, n]) => `${name} ${n}`).join(', ') : '';
    const timing = act?.roundSeconds ?? null;
    return h(
      'tr',
      { 'data-site': site.id },
      h('td', {}, h('strong', {}, site.id)),
      h('td', {}, h('span', { class: site.connected ? 'dot dot-on' : 'dot dot-off' }), site.connected ? 'connected' : 'offline'),
      h('td', { class: 'nowrap', title: formatTime(site.lastSeenAt), 'data-last-seen': site.lastSeenAt }, formatRelative(site.lastSeenAt)),
      h('td', {}, site.backend ?? '-'),
      h('td', { class: 'mono' }, site.agentVersion ?? '-'),
      h('td', { class: 'num', title: classes }, dataset ? h('div', {}, `${dataset.accepted} of ${dataset.files}`, h('div', { class: 'small' }, classes)) : '-'),
      h('td', { class: 'num', 'data-updates': act?.updates ?? 0 }, act ? `${act.updates} / ${act.roundsAssigned}` : '-'),
      h(
        'td',
        { class: 'num', 'data-round-seconds': timing?.median ?? '', title: timing ? `mean ${formatSeconds(timing.mean)}, slowest ${formatSeconds(timing.max)}` : '' },
        timing ? h('div', {}, formatSeconds(timing.median), h('div', { class: 'small' }, `last ${formatSeconds(timing.last)} (round ${timing.lastRound})`)) : '-',
      ),
      h('td', { class: 'num', 'data-bytes': act?.bytesSent ?? 0 }, act ? formatBytes(act.bytesSent) : '-'),
      h('td', { 'data-refusals': act?.refusals.count ?? 0 }, incident(act?.refusals.count ?? 0, act?.refusals.last ?? null)),
      h('td', { 'data-failures': act?.failures.count ?? 0 }, incident(act?.failures.count ?? 0, act?.failures.last ?? null)),
    );
  });
  return table(['Site', 'Connection', 'Last heartbeat', 'Backend', 'Agent', 'Images used', 'Updates / rounds', 'Round time', 'Sent', 'Refusals', 'Failures'], rows, { id: 'sites' });
}
