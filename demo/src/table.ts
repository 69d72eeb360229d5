import type { StudyStatusView } from './consortium.js';

type Round = StudyStatusView['rounds'][number];

const pct = (x: number | undefined): string => (x === undefined ? '   -  ' : `${(x * 100).toFixed(1).padStart(5)}%`);

/** One round as a small fixed-width table: each site's local metrics, then the global model's score. */
export function formatRoundTable(round: Round, globalAccuracy: number, holdoutCount: number, seconds: number): string {
  const lines = [
    `Round ${round.number}: ${round.participants} updates aggregated (${seconds.toFixed(1)} s)`,
    `  ${'site'.padEnd(14)} ${'train loss'.padStart(10)} ${'train acc'.padStart(9)} ${'val loss'.padStart(9)} ${'val acc'.padStart(8)} ${'samples'.padStart(7)}`,
  ];
  for (const siteId of round.assignedSites) {
    const train = round.metrics.find((m) => m.siteId === siteId && m.kind === 'train');
    const validation = round.metrics.find((m) => m.siteId === siteId && m.kind === 'validation');
    lines.push(
      `  ${siteId.padEnd(14)} ${(train ? train.loss.toFixed(4) : '-').padStart(10)} ${pct(train?.accuracy).padStart(9)} ` +
        `${(validation ? validation.loss.toFixed(4) : '-').padStart(9)} ${pct(validation?.accuracy).padStart(8)} ${String(train?.samples ?? '-').padStart(7)}`,
    );
  }
  lines.push(`  global model on ${holdoutCount} held-out images: accuracy ${pct(globalAccuracy).trim()}`);
  return lines.join('\n');
}

type Evaluation = NonNullable<Round['evaluation']>;
type Figures = Omit<Evaluation['sites'][number], 'siteId' | 'confusion' | 'shared'>;

const percent = (x: number | null): string => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);
const decimal = (x: number | null): string => (x === null ? '-' : x.toFixed(3));

/**
 * The round's global model as the sites scored it on their own held-out images: one line per site, and the
 * consortium's figures. Under the sites' default policy (shareMetrics: aggregate) only figures leave a site, so
 * there is no image count and the overall line is the mean of the sites' figures; with counts it is the pooled
 * figure from the summed counts. No image or per-image score left any site either way.
 */
export function formatEvaluationTable(evaluation: Evaluation | null): string {
  if (!evaluation) return '  federated evaluation: not requested for this round';
  const row = (name: string, m: Figures): string =>
    `  ${name.padEnd(16)} ${String(m.samples ?? '-').padStart(6)} ${percent(m.accuracy).padStart(8)} ${percent(m.balancedAccuracy).padStart(9)} ` +
    `${percent(m.sensitivity).padStart(7)} ${percent(m.specificity).padStart(7)} ${decimal(m.f1).padStart(6)} ${decimal(m.auc).padStart(6)}`;
  const countsOnly = evaluation.sites.every((site) => site.shared === 'counts');
  const lines = [
    `  federated evaluation of the global model on each site's held-out images (${countsOnly ? 'counts only' : 'figures only, no counts'}):`,
    `  ${'site'.padEnd(16)} ${'images'.padStart(6)} ${'accuracy'.padStart(8)} ${'bal. acc'.padStart(9)} ${'sens.'.padStart(7)} ${'spec.'.padStart(7)} ${'F1'.padStart(6)} ${'AUC'.padStart(6)}`,
    ...evaluation.sites.map((site) => row(site.siteId, site)),
  ];
  const overall = evaluation.overall;
  if (overall) lines.push(row(`${overall.method === 'site-mean' ? 'site mean' : 'overall'} (${overall.sites})`, overall));
  if (evaluation.pendingSites.length > 0) lines.push(`  not reported (yet): ${evaluation.pendingSites.join(', ')}`);
  if (evaluation.refusedSites.length > 0) lines.push(`  refused by site policy: ${evaluation.refusedSites.map((r) => `${r.siteId} (${r.reason})`).join(', ')}`);
  return lines.join('\n');
}
