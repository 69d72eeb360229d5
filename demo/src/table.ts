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
