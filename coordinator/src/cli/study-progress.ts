import type { RoundView, SiteMetricView, StudyStatus } from '../studies/studies.service.js';

/** What `federa study watch` draws from a study's status; pure, so tests check it without a terminal. */

const BAR_WIDTH = 24;

export function bar(done: number, total: number, width = BAR_WIDTH): string {
  const share = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.round(share * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

function figure(value: number | null | undefined, digits = 3): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

function duration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
}

/** "epsilon 2.31 at delta 1e-5": the privacy a site says it has spent on the study; null when it shared none. */
export function privacySpent(metric: Pick<SiteMetricView, 'privacyEpsilon' | 'privacyDelta'> | undefined): string | null {
  // Statuses from a coordinator before privacy accounting have no such fields at all.
  const epsilon = metric?.privacyEpsilon;
  const delta = metric?.privacyDelta;
  if (typeof epsilon !== 'number' || typeof delta !== 'number') return null;
  return `epsilon ${epsilon.toFixed(2)} at delta ${delta.toExponential()}`;
}

/** What a site's metrics of a round say it has spent (a train and a validation report may both carry it). */
export function sitePrivacySpent(round: RoundView, siteId: string): string | null {
  for (const m of round.metrics) {
    const spent = m.siteId === siteId ? privacySpent(m) : null;
    if (spent) return spent;
  }
  return null;
}

/** Each site's state in a round: what it is doing or why it is not contributing. */
export function siteStates(status: StudyStatus, round: RoundView): Array<{ siteId: string; state: string }> {
  const ids = new Set([...round.assignedSites, ...round.failures.map((f) => f.siteId), ...round.refusals.map((r) => r.siteId)]);
  const states: Array<{ siteId: string; state: string }> = [];
  for (const siteId of [...ids].sort()) {
    const failure = round.failures.find((f) => f.siteId === siteId);
    const refusal = round.refusals.find((r) => r.siteId === siteId && r.task === 'train') ?? round.refusals.find((r) => r.siteId === siteId);
    const metric = round.metrics.find((m) => m.siteId === siteId);
    const connected = status.sites.find((s) => s.id === siteId)?.connected;
    let state: string;
    if (status.droppedSites.includes(siteId)) state = 'dropped';
    else if (refusal) state = `refused (${refusal.reason}): ${refusal.message}`;
    else if (failure) state = `failed (${failure.reason}): ${failure.message}`;
    else if (round.reportedSites.includes(siteId)) {
      const spent = sitePrivacySpent(round, siteId);
      state = metric
        ? `reported  loss ${figure(metric.loss)}  accuracy ${figure(metric.accuracy)}${metric.samples !== null ? `  (${metric.samples} images)` : ''}${spent ? `  ${spent}` : ''}`
        : 'reported';
    } else if (round.closedAt !== null) state = 'did not report';
    else state = connected === false ? 'training (disconnected, waiting for it to return)' : 'training';
    states.push({ siteId, state });
  }
  return states;
}

/** The global model's federated evaluation after a round, in one line; null before there is one. */
export function evaluationLine(round: RoundView): string | null {
  const overall = round.evaluation?.overall;
  if (!overall) return null;
  const scope = `(${overall.sites} site${overall.sites === 1 ? '' : 's'}${overall.samples !== null ? `, ${overall.samples} images` : ''})`;
  const seg = overall.segmentation;
  if (seg) return `Dice ${figure(seg.dice)}  IoU ${figure(seg.iou)}  sensitivity ${figure(seg.sensitivity)}  precision ${figure(seg.precision)}  ${scope}`;
  return `accuracy ${figure(overall.accuracy)}  balanced accuracy ${figure(overall.balancedAccuracy)}  AUC ${figure(overall.auc)}  (${overall.sites} site${overall.sites === 1 ? '' : 's'}${overall.samples !== null ? `, ${overall.samples} images` : ''})`;
}

/** The whole picture, redrawn in place on a terminal. */
export function describeProgress(status: StudyStatus, now: number): string[] {
  const closed = status.rounds.filter((r) => r.number > 0 && r.status === 'closed').length;
  const lines = [`Study ${status.name} (${status.id})  ${status.status}`, `Rounds   ${bar(closed, status.totalRounds)} ${closed}/${status.totalRounds} done`];
  const current = [...status.rounds].reverse().find((r) => r.number > 0);
  if (current) {
    const assigned = current.assignedSites.length;
    const reported = current.reportedSites.length;
    const deadline = current.deadlineAt && current.closedAt === null ? `  deadline in ${duration(Date.parse(current.deadlineAt) - now)}` : '';
    const label = `Round ${current.number}`.padEnd(8);
    lines.push(`${label} ${bar(reported, assigned)} ${reported}/${assigned} sites reported  ${current.status}${deadline}`);
    const states = siteStates(status, current);
    const width = Math.max(8, ...states.map((s) => s.siteId.length));
    for (const { siteId, state } of states) lines.push(`  ${siteId.padEnd(width)}  ${state}`);
  }
  const evaluated = [...status.rounds].reverse().find((r) => evaluationLine(r) !== null);
  if (evaluated) lines.push(`Global model after round ${evaluated.number}: ${evaluationLine(evaluated)}`);
  if (status.error) lines.push(`Error: ${status.error}`);
  return lines;
}

/**
 * What changed between two statuses, as log lines: for pipes and CI logs, where redrawing in place makes no sense.
 * The first status (previous null) gives a one-line summary.
 */
export function describeChanges(previous: StudyStatus | null, next: StudyStatus): string[] {
  if (!previous) {
    const current = next.rounds.at(-1);
    return [`study ${next.id} "${next.name}" is ${next.status}, round ${current?.number ?? 0} of ${next.totalRounds}`];
  }
  const lines: string[] = [];
  for (const round of next.rounds) {
    if (round.number === 0) continue;
    const before = previous.rounds.find((r) => r.number === round.number);
    if (!before) lines.push(`round ${round.number} opened: ${round.assignedSites.length} sites assigned (${round.assignedSites.join(', ')})`);
    const states = siteStates(next, round);
    const beforeStates = before ? siteStates(previous, before) : [];
    for (const { siteId, state } of states) {
      const old = beforeStates.find((s) => s.siteId === siteId)?.state;
      if (old !== state && state !== 'training') lines.push(`round ${round.number} ${siteId}: ${state}`);
    }
    if (before?.status !== round.status && before !== undefined) lines.push(`round ${round.number} ${round.status}${round.participants ? ` with ${round.participants} sites` : ''}`);
    const evaluation = evaluationLine(round);
    if (evaluation && (!before || evaluationLine(before) !== evaluation)) lines.push(`round ${round.number} global model: ${evaluation}`);
  }
  if (previous.status !== next.status) lines.push(`study ${next.status}${next.error ? `: ${next.error}` : ''}`);
  return lines;
}
