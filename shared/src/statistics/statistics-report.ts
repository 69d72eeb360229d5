import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../study/canonical-json.js';
import type { FeatureStatistics, StatisticsPlan } from './federated-statistics.js';

/**
 * The consortium statistics as they travel from a site to the coordinator (StatisticsReport.statistics_json) and as
 * the study view shows them: canonical JSON, so every site that decrypted the same sum sends the same bytes and the
 * coordinator compares them by hash. Undefined figures (NaN: the variance of a single value, the bounds of an empty
 * histogram) are null.
 */
const figure = z.number().nullable();

export const featureStatisticsViewSchema = z
  .object({
    feature: z.string().min(1).max(100),
    count: z.int().min(0),
    units: z.int().min(0),
    mean: figure,
    variance: figure,
    std: figure,
    minAtLeast: figure,
    maxAtMost: figure,
    histogram: z.object({ edges: z.array(z.number()), counts: z.array(z.int().min(0)) }).strict(),
    quantiles: z.array(z.object({ q: z.number().min(0).max(1), value: figure }).strict()),
  })
  .strict();

export type FeatureStatisticsView = z.output<typeof featureStatisticsViewSchema>;

export const MAX_STATISTICS_JSON_BYTES = 4 << 20;

/** The report's JSON of decoded statistics, and its SHA-256. */
export function statisticsReportJson(stats: readonly FeatureStatistics[]): { json: string; sha256: string } {
  const json = canonicalJson(stats.map((s) => ({ ...s, mean: finite(s.mean), variance: finite(s.variance), std: finite(s.std), minAtLeast: finite(s.minAtLeast), maxAtMost: finite(s.maxAtMost), quantiles: s.quantiles.map((q) => ({ q: q.q, value: finite(q.value) })) })));
  return { json, sha256: createHash('sha256').update(json, 'utf8').digest('hex') };
}

function finite(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

/**
 * Parses a site's report against the study's plan: the plan's features in order, a histogram of the plan's bins
 * holding every counted value, canonical bytes that hash to the declared SHA-256. Returns the problem, or the
 * statistics.
 */
export function parseStatisticsReport(json: string, sha256: string, plan: StatisticsPlan): { ok: true; statistics: FeatureStatisticsView[] } | { ok: false; problem: string } {
  if (json.length > MAX_STATISTICS_JSON_BYTES) return { ok: false, problem: `statistics_json: longer than ${MAX_STATISTICS_JSON_BYTES} bytes` };
  const actual = createHash('sha256').update(json, 'utf8').digest('hex');
  if (actual !== sha256) return { ok: false, problem: `sha256: the statistics hash to ${actual}, the report says ${sha256}` };
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (error) {
    return { ok: false, problem: `statistics_json: not JSON (${(error as Error).message})` };
  }
  const parsed = z.array(featureStatisticsViewSchema).safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ok: false, problem: `statistics_json.${issue?.path.map(String).join('.') ?? ''}: ${issue?.message ?? 'invalid'}` };
  }
  if (canonicalJson(parsed.data) !== json) return { ok: false, problem: 'statistics_json: not in canonical form' };
  const names = parsed.data.map((s) => s.feature);
  const expected = plan.columns.map((c) => c.feature);
  if (names.join('\u0000') !== expected.join('\u0000')) return { ok: false, problem: `statistics_json: features [${names.join(', ')}] are not the study's [${expected.join(', ')}]` };
  for (const [k, s] of parsed.data.entries()) {
    const column = plan.columns[k]!;
    if (s.histogram.counts.length !== column.bins || s.histogram.edges.length !== column.bins + 1) {
      return { ok: false, problem: `statistics_json.${k}.histogram: ${s.feature} has ${column.bins} bins` };
    }
    if (s.histogram.counts.reduce((a, b) => a + b, 0) !== s.count || s.count !== s.units * column.per) {
      return { ok: false, problem: `statistics_json.${k}: ${s.feature}'s histogram, count and units disagree` };
    }
  }
  return { ok: true, statistics: parsed.data };
}
