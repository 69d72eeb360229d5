import { badge, h, progressBar, table } from './dom.js';
import { formatBytes, formatCountdown, formatEpsilon, formatRelative, formatSeconds } from './format.js';
import type { RoundView, SiteActivityView, SiteView, StudyStatus } from './types.js';

export type SiteRoundState = 'assigned' | 'reported' | 'failed' | 'refused' | 'dropped' | 'no update';

export interface SiteRoundRow {
  siteId: string;
  state: SiteRoundState;
  detail: string;
}

/** Each site's part in a round: reported, failed or refused (with the reason it gave), dropped, or still assigned. */
export function siteRoundRows(study: StudyStatus, round: RoundView): SiteRoundRow[] {
  const refusals = round.refusals.filter((r) => r.task === 'train');
  const ids = [...new Set([...round.assignedSites, ...refusals.map((r) => r.siteId), ...round.failures.map((f) => f.siteId)])].sort();
  return ids.map((siteId): SiteRoundRow => {
    const failure = round.failures.find((f) => f.siteId === siteId);
    const refusal = refusals.find((r) => r.siteId === siteId);
    if (round.reportedSites.includes(siteId)) return { siteId, state: 'reported', detail: '' };
    if (failure) return { siteId, state: 'failed', detail: `${failure.reason}: ${failure.message}` };
    if (refusal) return { siteId, state: 'refused', detail: `${refusal.reason}: ${refusal.message}` };
    if (study.droppedSites.includes(siteId)) return { siteId, state: 'dropped', detail: 'dropped from the study' };
    return { siteId, state: round.status === 'open' ? 'assigned' : 'no update', detail: round.status === 'open' ? 'training or uploading' : '' };
  });
}

const TONE: Record<SiteRoundState, 'ok' | 'bad' | 'warn' | 'info' | 'muted'> = {
  reported: 'ok',
  failed: 'bad',
  refused: 'bad',
  dropped: 'bad',
  assigned: 'info',
  'no update': 'muted',
};

/** The round in progress, or the last one once the study has stopped running. */
export function currentRound(study: StudyStatus): RoundView | null {
  return study.rounds.at(-1) ?? null;
}

/** "Rounds" and "this round" bars; the deadline text is filled in (and ticked) by the caller. */
export function progressBars(study: StudyStatus, deadline: HTMLElement): HTMLElement {
  const done = study.status === 'completed' ? study.totalRounds : study.rounds.filter((r) => r.status === 'closed').length;
  const round = currentRound(study);
  const bars: HTMLElement[] = [progressBar(`Rounds: ${done} of ${study.totalRounds} done`, done / Math.max(1, study.totalRounds), { id: 'rounds-progress', 'data-done': done, 'data-total': study.totalRounds })];
  if (round) {
    const assigned = round.assignedSites.length;
    const reported = round.reportedSites.length;
    const label = `Round ${round.number} (${round.status}): ${reported} of ${assigned} sites reported`;
    const bar = progressBar(label, reported / Math.max(1, assigned), { id: 'round-progress', 'data-reported': reported, 'data-assigned': assigned });
    bar.querySelector('.progress-label')?.append(' · ', deadline);
    bars.push(bar);
  }
  return h('div', { class: 'progress-stack' }, bars);
}

/** The deadline as it reads now: a countdown while the round is open, how it ended otherwise. */
export function deadlineText(study: StudyStatus): string {
  const round = currentRound(study);
  if (!round) return '';
  if (round.status !== 'open') return round.closedAt ? `closed after ${formatSeconds((new Date(round.closedAt).getTime() - new Date(round.openedAt).getTime()) / 1000)}` : round.status;
  if (!round.deadlineAt) return 'no deadline';
  const extended = round.extensions > 0 ? ' (extended)' : '';
  return `deadline in ${formatCountdown(round.deadlineAt)}${extended}`;
}

/**
 * The privacy a site has spent on the study, as its latest report up to `round` says (each report is the total so
 * far); null when it shared none, as under a policy that withholds metrics or in a study without DP.
 */
export function privacySpent(study: StudyStatus, siteId: string, round: number): { epsilon: number; delta: number; round: number } | null {
  for (const r of [...study.rounds].reverse()) {
    if (r.number > round) continue;
    for (const m of r.metrics) {
      if (m.siteId === siteId && typeof m.privacyEpsilon === 'number' && typeof m.privacyDelta === 'number') {
        return { epsilon: m.privacyEpsilon, delta: m.privacyDelta, round: r.number };
      }
    }
  }
  return null;
}

/** Per-site state in the current round, with connection, data and timing figures beside it. */
export function roundSitesTable(study: StudyStatus, sites: ReadonlyMap<string, SiteView>, activity: ReadonlyMap<string, SiteActivityView>): HTMLElement {
  const round = currentRound(study);
  if (!round) return h('p', { class: 'empty' }, 'No round has opened yet.');
  const rows = siteRoundRows(study, round).map((row) => {
    const site = sites.get(row.siteId);
    const inStudy = study.sites.find((s) => s.id === row.siteId);
    const connected = site?.connected ?? inStudy?.connected ?? false;
    const dataset = inStudy?.dataset ?? null;
    const act = activity.get(row.siteId);
    const spent = privacySpent(study, row.siteId, round.number);
    return h(
      'tr',
      { 'data-site': row.siteId, 'data-state': row.state },
      h('td', {}, row.siteId),
      h('td', {}, badge(row.state, TONE[row.state])),
      h('td', { class: 'detail' }, row.detail),
      h('td', {}, h('span', { class: connected ? 'dot dot-on' : 'dot dot-off', title: connected ? 'connected' : 'not connected' }), connected ? 'connected' : 'offline'),
      h('td', { class: 'nowrap', title: site?.lastSeenAt ?? '' }, site ? formatRelative(site.lastSeenAt) : '-'),
      h('td', { class: 'num' }, dataset ? `${dataset.accepted} of ${dataset.files}` : '-'),
      h('td', { class: 'num' }, act?.roundSeconds ? formatSeconds(act.roundSeconds.median) : '-'),
      h(
        'td',
        { class: 'num nowrap', 'data-epsilon': spent?.epsilon ?? null, title: spent ? `as the site reported it in round ${spent.round}` : 'not shared' },
        formatEpsilon(spent?.epsilon, spent?.delta),
      ),
      h('td', { class: 'num' }, act ? formatBytes(act.bytesSent) : '-'),
    );
  });
  return table(
    ['Site', `Round ${round.number}`, 'Reason', 'Connection', 'Last heartbeat', 'Images used', 'Median round time', 'ε spent', 'Sent (study)'],
    rows,
    { id: 'round-sites' },
  );
}
