import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeConsortiumStatistics, encodeSiteStatistics, parseStatisticsReport, statisticsPlanSchema, statisticsReportJson } from './index.js';

const plan = statisticsPlanSchema.parse({ columns: [{ feature: 'intensity', bins: 4, min: 0, max: 1, per: 2 }, { feature: 'glcm_contrast', bins: 2, min: 0, max: 4 }] });
const decoded = decodeConsortiumStatistics(plan, encodeSiteStatistics(plan, [Float64Array.of(0.1, 0.2, 0.7, 0.9), Float64Array.of(1)]));

describe('statistics reports', () => {
  it('are canonical JSON with undefined figures as null, which parse back against the plan', () => {
    const { json, sha256 } = statisticsReportJson(decoded);
    // One contrast value: no sample variance.
    expect(JSON.parse(json)[1].variance).toBeNull();
    const parsed = parseStatisticsReport(json, sha256, plan);
    expect(parsed.ok && parsed.statistics.map((s) => [s.feature, s.count, s.units])).toEqual([
      ['intensity', 4, 2],
      ['glcm_contrast', 1, 1],
    ]);
    expect(statisticsReportJson(decoded)).toEqual({ json, sha256 });
  });

  it('refuses another hash, other features, non-canonical bytes and histograms that disagree with their counts', () => {
    const { json, sha256 } = statisticsReportJson(decoded);
    const problem = (text: string, hash = sha256) => {
      const parsed = parseStatisticsReport(text, hash, plan);
      return parsed.ok ? null : parsed.problem;
    };
    expect(problem(json, '0'.repeat(64))).toMatch(/^sha256: the statistics hash to [0-9a-f]{64}, the report says 0{64}$/);
    const reHash = (text: string) => problem(text, createHash('sha256').update(text, 'utf8').digest('hex'));
    const other = statisticsPlanSchema.parse({ columns: [plan.columns[0]!] });
    expect(parseStatisticsReport(json, sha256, other)).toEqual({ ok: false, problem: 'statistics_json: features [intensity, glcm_contrast] are not the study\'s [intensity]' });
    expect(reHash(JSON.stringify(JSON.parse(json), null, 1))).toBe('statistics_json: not in canonical form');
    const edited = JSON.parse(json);
    edited[0].count = 5;
    expect(reHash(JSON.stringify(edited))).toBe('statistics_json.0: intensity\'s histogram, count and units disagree');
    expect(reHash('[{"feature":1}]')).toMatch(/^statistics_json\.0\.\w+: /);
  });
});

