import { studyDefinitionSchema, type StudyDefinition } from '@federa/shared';
import { describe, expect, it } from 'vitest';
import type { SiteConfig } from '../config/index.js';
import type { Outbound } from '../outbound/index.js';
import type { GlobalModels } from './global-models.js';
import type { RoundStateStore } from './round-state.js';
import { StatisticsWork } from './statistics-round.js';

const linearStudy = (statistics?: unknown): StudyDefinition =>
  studyDefinitionSchema.parse({
    name: 'scaled features',
    model: { architecture: 'logistic-regression', inputSize: 16, channels: 1, classes: 2, seed: 1, features: ['edges'] },
    classNames: ['normal', 'lesion'],
    rounds: 3,
    minSites: 2,
    localEpochs: 1,
    batchSize: 4,
    learningRate: 0.01,
    ...(statistics ? { statistics } : {}),
  });

/** StatisticsWork over a model cache whose round 1 decrypted these feature statistics; nothing else is used. */
function work(features: Array<{ feature: string; mean: number | null; std: number | null }>): { statistics: StatisticsWork; reads: string[] } {
  const reads: string[] = [];
  const models = {
    statistics: async (studyId: string) => {
      reads.push(studyId);
      return { json: '[]', sha256: '', features };
    },
  } as unknown as GlobalModels;
  const config = { site: { id: 'hospital-a' }, policy: {} } as unknown as SiteConfig;
  return { statistics: new StatisticsWork(config, {} as Outbound, {} as RoundStateStore, models), reads };
}

describe('the model a statistics study trains', () => {
  // The edge group: 6 features per channel.
  const moments = Array.from({ length: 6 }, (_, i) => ({ feature: `model_feature_${i}`, mean: i / 10, std: 0.5 + i }));

  it('is the linear model standardised with the consortium moments of its features, from round 2 on', async () => {
    const def = linearStudy({ modelFeatures: true });
    const { statistics, reads } = work(moments);
    expect(await statistics.trainingSpec({ studyId: 's1', round: 1 }, def)).toBe(def.model);
    expect(reads).toEqual([]);
    const spec = await statistics.trainingSpec({ studyId: 's1', round: 2 }, def);
    expect(spec).toEqual({ ...def.model, standardize: { mean: moments.map((m) => m.mean), std: moments.map((m) => m.std) } });
    expect(reads).toEqual(['s1']);
    // The definition itself is left as it was.
    expect('standardize' in def.model).toBe(false);
  });

  it('is the study\'s own model without modelFeatures, and refuses totals that lack a feature', async () => {
    const plain = linearStudy({ intensity: {} });
    expect(await work(moments).statistics.trainingSpec({ studyId: 's1', round: 2 }, plain)).toBe(plain.model);
    const def = linearStudy({ modelFeatures: true });
    await expect(work(moments.slice(0, 5)).statistics.trainingSpec({ studyId: 's1', round: 2 }, def)).rejects.toThrow(/model feature 5/);
  });
});
