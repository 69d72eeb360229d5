import { readFile } from 'node:fs/promises';
import { architectureTask, describeStudyPrivacy, parseStudyYaml, resolveStudyDefinition, studyHash, StudyFileError, type StudyDefinition } from '@federa/shared';
import type { OverallEvaluationView, SiteEvaluationView } from '../rounds/evaluation.js';
import type { StudyEvaluation, StudyStatus, StudySummary } from '../studies/studies.service.js';
import type { ApiClient } from './api-client.js';
import { privacySpent } from './study-progress.js';
import { CliFailure, type CliIo } from './io.js';
import { fixed, formatCsv, formatTable } from './table.js';

/** The researcher's study commands over REST; each prints a table, or the server's JSON with --json. */

const studyPath = (id: string, rest = ''): string => `/api/v1/studies/${encodeURIComponent(id)}${rest}`;

function print(io: CliIo, json: boolean, value: unknown, text: () => string): void {
  io.stdout(json ? `${JSON.stringify(value, null, 2)}\n` : text());
}

/** Reads and checks a definition file here first, so a mistake is reported with its line before anything is sent. */
export async function readDefinitionFile(file: string): Promise<StudyDefinition> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CliFailure(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return parseStudyYaml(text, file);
  } catch (error) {
    if (error instanceof StudyFileError) throw new CliFailure(error.message);
    throw error;
  }
}

export async function createStudy(api: ApiClient, io: CliIo, file: string, opts: { json: boolean; start: boolean }): Promise<number> {
  const definition = await readDefinitionFile(file);
  const created = await api.json<StudyStatus>('/api/v1/studies', { method: 'POST', body: definition });
  let hash: string;
  try {
    hash = studyHash(resolveStudyDefinition(definition));
  } catch (error) {
    throw error instanceof RangeError ? new CliFailure(`${file}: ${error.message}`) : error;
  }
  if (hash !== created.specHash) throw new CliFailure(`the coordinator recorded hash ${created.specHash} for ${file}, which hashes to ${hash} here: do not approve it, and report this`);
  let started: StudyStatus | null = null;
  if (opts.start) started = await api.json<StudyStatus>(studyPath(created.id, '/start'), { method: 'POST' });
  print(io, opts.json, started ?? created, () =>
    [
      `created study ${created.id} "${created.name}" (${created.status === 'draft' && started ? started.status : created.status})`,
      `  hash ${created.specHash}`,
      `each hospital approves it by this hash (federa-site approve ${created.specHash});`,
      started ? `watch it: federa study watch ${created.id}` : `then start it: federa study start ${created.id}`,
      '',
    ].join('\n'),
  );
  return 0;
}

export async function listStudies(api: ApiClient, io: CliIo, opts: { json: boolean }): Promise<number> {
  const studies = await api.json<StudySummary[]>('/api/v1/studies');
  print(io, opts.json, studies, () =>
    studies.length === 0
      ? 'no studies yet: create one with federa study create -f study.yaml (examples in examples/studies/)\n'
      : formatTable(
          ['ID', 'NAME', 'STATUS', 'ROUND', 'OWNER', 'CREATED'],
          studies.map((s) => [s.id, s.name, s.status, `${s.currentRound}/${s.totalRounds}`, s.owner ?? '-', s.createdAt.slice(0, 19).replace('T', ' ')]),
        ),
  );
  return 0;
}

export async function showStudy(api: ApiClient, io: CliIo, id: string, opts: { json: boolean }): Promise<number> {
  const study = await api.json<StudyStatus>(studyPath(id));
  print(io, opts.json, study, () => {
    const d = study.definition;
    const segmentation = architectureTask(d.model.architecture) === 'segmentation';
    const work = d.localSteps !== undefined ? `${d.localSteps} local steps` : `${d.localEpochs ?? 1} local epochs`;
    const server = d.serverOptimizer ? `; server optimizer ${d.serverOptimizer.kind} lr ${d.serverOptimizer.learningRate}` : '';
    const head = [
      `study ${study.id} "${study.name}"  ${study.status}  round ${study.currentRound}/${study.totalRounds}`,
      `  owner    ${study.owner ?? '-'}`,
      `  hash     ${study.specHash}`,
      `  model    ${d.model.architecture} ${d.model.inputSize}x${d.model.inputSize}x${d.model.channels}, classes ${d.classNames.join(', ')}`,
      `  training ${work}, batch ${d.batchSize}, ${d.optimizer} lr ${d.learningRate}${server}; aggregation ${d.aggregation}; at least ${d.minSites} sites`,
      ...(segmentation ? [`  task     segmentation of ${d.classNames.slice(1).join(', ')} (loss ${d.segmentation?.loss ?? 'dice+cross-entropy'}; unmasked images: ${d.segmentation?.unmaskedImages ?? 'reject'})`] : []),
      `  privacy  ${describeStudyPrivacy(d.privacy)}`,
      `  sites    ${study.sites.map((s) => `${s.id}${s.dropped ? ' (dropped)' : s.connected ? '' : ' (away)'}`).join(', ') || '-'}`,
      ...(study.error ? [`  error    ${study.error}`] : []),
      '',
    ].join('\n');
    const rounds = study.rounds.filter((r) => r.number > 0);
    const table =
      rounds.length === 0
        ? 'no rounds yet\n'
        : formatTable(
            ['ROUND', 'STATUS', 'SITES', 'TRAIN LOSS', ...(segmentation ? ['DICE', 'IOU', 'PRECISION'] : ['ACCURACY', 'BAL.ACC', 'AUC']), 'FAILED/REFUSED'],
            rounds.map((r) => {
              const overall = r.evaluation?.overall;
              const loss = r.metrics.length ? r.metrics.reduce((sum, m) => sum + m.loss, 0) / r.metrics.length : null;
              const figures = segmentation
                ? [overall?.segmentation?.dice, overall?.segmentation?.iou, overall?.segmentation?.precision]
                : [overall?.accuracy, overall?.balancedAccuracy, overall?.auc];
              return [
                String(r.number),
                r.status,
                `${r.reportedSites.length}/${r.assignedSites.length}`,
                fixed(loss),
                ...figures.map((f) => fixed(f)),
                [...r.failures.map((f) => `${f.siteId}:${f.reason}`), ...r.refusals.map((x) => `${x.siteId}:${x.reason}`)].join(' ') || '-',
              ];
            }),
          );
    return `${head}\n${table}${spentText(study)}${statisticsText(study)}`;
  });
  return 0;
}

/** A statistics study's consortium totals, one row per feature; empty before any site decrypted them. */
function statisticsText(study: StudyStatus): string {
  const stats = study.statistics;
  if (!stats) return '';
  const quantile = (f: (typeof stats.features)[number], q: number): string => fixed(f.quantiles.find((x) => Math.abs(x.q - q) < 1e-9)?.value ?? null);
  const mismatch = stats.mismatchedSites.length > 0 ? `\n  differing totals reported by ${stats.mismatchedSites.join(', ')}: their decrypted sum is not the first site's` : '';
  return `\nconsortium statistics (round ${stats.round}, sha256 ${stats.sha256.slice(0, 16)}...; only these totals were decrypted)${mismatch}\n${formatTable(
    ['FEATURE', 'IMAGES', 'VALUES', 'MEAN', 'STD', 'MIN>=', 'MAX<=', 'P05', 'P50', 'P95'],
    stats.features.map((f) => [f.feature, String(f.units), String(f.count), fixed(f.mean, 4), fixed(f.std, 4), fixed(f.minAtLeast), fixed(f.maxAtMost), quantile(f, 0.05), quantile(f, 0.5), quantile(f, 0.95)]),
  )}`;
}

/** Each site's privacy spend as of the latest round it reported one in; empty when no site shared any. */
function spentText(study: StudyStatus): string {
  const latest = new Map<string, string>();
  for (const round of study.rounds) {
    for (const m of round.metrics) {
      const spent = privacySpent(m);
      if (spent) latest.set(m.siteId, `${spent} (round ${round.number})`);
    }
  }
  if (latest.size === 0) return '';
  const width = Math.max(...[...latest.keys()].map((id) => id.length));
  return ['\nprivacy spent, as each site reports it:', ...[...latest].sort(([a], [b]) => a.localeCompare(b)).map(([siteId, spent]) => `  ${siteId.padEnd(width)}  ${spent}`), ''].join('\n');
}

export async function steerStudy(
  api: ApiClient,
  io: CliIo,
  action: 'start' | 'stop' | 'pause' | 'resume',
  id: string,
  opts: { json: boolean; reason?: string },
): Promise<number> {
  const body = action === 'start' ? undefined : opts.reason !== undefined ? { reason: opts.reason } : {};
  const study = await api.json<StudyStatus | StudySummary>(studyPath(id, `/${action}`), { method: 'POST', body });
  const next = action === 'stop' ? '' : action === 'pause' ? ` (resume with federa study resume ${id})` : ` (follow it: federa study watch ${id})`;
  print(io, opts.json, study, () => `study ${id} is ${study.status}${next}\n`);
  return 0;
}

export async function dropSite(api: ApiClient, io: CliIo, id: string, siteId: string, opts: { json: boolean; reason?: string }): Promise<number> {
  const result = await api.json<unknown>(studyPath(id, `/sites/${encodeURIComponent(siteId)}/drop`), {
    method: 'POST',
    body: opts.reason !== undefined ? { reason: opts.reason } : {},
  });
  print(io, opts.json, result, () => `site ${siteId} is dropped from study ${id}: it is not assigned again\n`);
  return 0;
}

/** Classification figures, then a segmentation study's (sensitivity is shared), then the DP spent so far. */
const METRIC_COLUMNS = ['round', 'site', 'source', 'samples', 'loss', 'accuracy', 'balanced_accuracy', 'sensitivity', 'specificity', 'f1', 'auc', 'dice', 'iou', 'precision', 'epsilon'] as const;
type MetricRow = Record<(typeof METRIC_COLUMNS)[number], string | number | null>;

function evaluationRow(round: number, site: string, e: SiteEvaluationView | OverallEvaluationView): MetricRow {
  return {
    round,
    site,
    source: 'evaluation',
    samples: e.samples,
    loss: null,
    accuracy: e.accuracy ?? null,
    balanced_accuracy: e.balancedAccuracy ?? null,
    sensitivity: e.segmentation?.sensitivity ?? e.sensitivity ?? null,
    specificity: e.specificity ?? null,
    f1: e.f1 ?? null,
    auc: e.auc ?? null,
    dice: e.segmentation?.dice ?? null,
    iou: e.segmentation?.iou ?? null,
    precision: e.segmentation?.precision ?? null,
    epsilon: null,
  };
}

/** Every round's figures: each site's training metrics, and the federated evaluation per site and overall ("global"). */
export function metricRows(study: StudyStatus): MetricRow[] {
  const rows: MetricRow[] = [];
  for (const round of study.rounds) {
    for (const m of round.metrics) {
      const none = { balanced_accuracy: null, sensitivity: null, specificity: null, f1: null, auc: null, dice: null, iou: null, precision: null };
      rows.push({ round: round.number, site: m.siteId, source: m.kind, samples: m.samples, loss: m.loss, accuracy: m.accuracy, ...none, epsilon: m.privacyEpsilon ?? null });
    }
    for (const site of round.evaluation?.sites ?? []) rows.push(evaluationRow(round.number, site.siteId, site));
    if (round.evaluation?.overall) rows.push(evaluationRow(round.number, 'global', round.evaluation.overall));
  }
  return rows;
}

export async function studyMetrics(api: ApiClient, io: CliIo, id: string, opts: { json: boolean; csv: boolean }): Promise<number> {
  const rows = metricRows(await api.json<StudyStatus>(studyPath(id)));
  if (opts.json) io.stdout(`${JSON.stringify(rows, null, 2)}\n`);
  else if (opts.csv) io.stdout(formatCsv(METRIC_COLUMNS, rows.map((r) => METRIC_COLUMNS.map((c) => r[c]))));
  else if (rows.length === 0) io.stdout(`no metrics yet: study ${id} has no finished round (federa study watch ${id})\n`);
  else {
    io.stdout(
      formatTable(
        METRIC_COLUMNS.map((c) => c.toUpperCase().replace('_', '.')),
        rows.map((r) => METRIC_COLUMNS.map((c) => (typeof r[c] === 'number' && !Number.isInteger(r[c]) ? fixed(r[c] as number) : r[c] === null ? '-' : String(r[c])))),
      ),
    );
  }
  return 0;
}

export async function studyEvaluation(api: ApiClient, io: CliIo, id: string, opts: { json: boolean; round?: number }): Promise<number> {
  const evaluation = await api.json<StudyEvaluation>(studyPath(id, '/evaluation'));
  const rounds = opts.round === undefined ? evaluation.rounds : evaluation.rounds.filter((r) => r.number === opts.round);
  if (opts.json) {
    io.stdout(`${JSON.stringify({ ...evaluation, rounds }, null, 2)}\n`);
    return 0;
  }
  if (rounds.length === 0) {
    io.stdout(
      opts.round === undefined
        ? `no federated evaluation yet for study ${id}: sites evaluate each round's model once it is published\n`
        : `round ${opts.round} of study ${id} has no evaluation; rounds with one: ${evaluation.rounds.map((r) => r.number).join(', ') || 'none'}\n`,
    );
    return 0;
  }
  for (const round of rounds) {
    const rows = [...round.sites.map((s) => ({ name: s.siteId, e: s as SiteEvaluationView | OverallEvaluationView })), ...(round.overall ? [{ name: 'global', e: round.overall }] : [])];
    io.stdout(`round ${round.number}${round.overall ? ` (${round.overall.method}, ${round.overall.sites} sites)` : ''}\n`);
    io.stdout(
      formatTable(
        ['SITE', 'IMAGES', 'ACCURACY', 'BAL.ACC', 'SENS', 'SPEC', 'F1', 'AUC'],
        rows.map(({ name, e }) => [name, e.samples === null ? '-' : String(e.samples), fixed(e.accuracy), fixed(e.balancedAccuracy), fixed(e.sensitivity), fixed(e.specificity), fixed(e.f1), fixed(e.auc)]),
      ),
    );
    if (round.pendingSites.length) io.stdout(`  waiting for: ${round.pendingSites.join(', ')}\n`);
    if (round.refusedSites.length) io.stdout(`  refused: ${round.refusedSites.map((r) => `${r.siteId} (${r.reason})`).join(', ')}\n`);
    io.stdout('\n');
  }
  const last = rounds.at(-1)!;
  const confusion = last.overall?.confusion;
  if (confusion) {
    io.stdout(`confusion matrix, round ${last.number}, all sites (rows: true class, columns: predicted)\n`);
    io.stdout(formatTable(['', ...evaluation.classNames], confusion.map((row, t) => [evaluation.classNames[t] ?? String(t), ...row.map(String)])));
  }
  return 0;
}
