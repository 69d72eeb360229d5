import { z } from 'zod';
import { statisticsPlanSchema, statisticsVectorLength, type StatisticsPlan } from './federated-statistics.js';

/**
 * A study's statistics round: with `statistics` in its definition, round 1 computes them instead of training. Every
 * site encodes its images' statistics, the encrypted sum adds them, and only the consortium's totals are decrypted
 * (by the sites; the coordinator holds no key). Training, if the study has more rounds, starts at round 2, from the
 * initial model.
 */
export const studyStatisticsSchema = z
  .object({
    /**
     * Per channel, the pixel intensities after the study's preprocessing; each image's pixels count as one image, so
     * a large image does not outweigh a small one.
     */
    intensity: z
      .object({
        bins: z.int().min(2).max(1_024).default(64),
        min: z.number().default(0),
        max: z.number().default(1),
      })
      .strict()
      .refine((h) => h.max > h.min, { message: 'max must be greater than min', path: ['max'] })
      .optional(),
    /**
     * Image features of the whole preprocessed image, one value per image, each with the range its histogram covers:
     * firstorder_<name>, edges_<name>, glcm_<name> and lbp_<name> (site-agent/src/features; a c<k>_ prefix per
     * channel for colour), e.g. firstorder_mean, edges_density, glcm_contrast.
     */
    features: z
      .array(
        z
          .object({
            name: z.string().regex(/^[a-z0-9_]{1,64}$/, 'a feature name is 1-64 characters of a-z, 0-9 and "_"'),
            min: z.number(),
            max: z.number(),
          })
          .strict()
          .refine((f) => f.max > f.min, { message: 'max must be greater than min', path: ['max'] }),
      )
      .min(1)
      .max(256)
      .refine((features) => new Set(features.map((f) => f.name)).size === features.length, 'features must be unique')
      .optional(),
    /** Histogram bins of each feature. */
    featureBins: z.int().min(2).max(1_024).default(32),
    /**
     * The training rounds after the statistics round scale every channel to the consortium's mean and standard
     * deviation, (x − mean) / std, after the study's preprocessing: a federated StandardScaler. Needs `intensity`.
     */
    zScore: z.boolean().default(false),
    /**
     * Intensity harmonisation across scanners: in the training rounds each site first maps every channel of its own
     * images onto the consortium's distribution by matching mean and standard deviation, x' = (x − mean_site) /
     * std_site · std + mean (its own moments never leave it), so a site whose scanner reads brighter or flatter trains
     * on the consortium's scale. Combined with zScore, the images end at mean 0 and standard deviation 1. Needs
     * `intensity`.
     */
    harmonise: z.boolean().default(false),
  })
  .strict();

export type StudyStatistics = z.output<typeof studyStatisticsSchema>;

/** What a definition needs for its statistics: the preprocessed image grid and the statistics section. */
interface StatisticsStudy {
  model: { inputSize: number; channels: number };
  statistics?: StudyStatistics | undefined;
}

/** The intensity column of channel c: "intensity" for a grey study, "intensity_c<k>" per channel otherwise. */
export function intensityFeature(channels: number, channel: number): string {
  return channels === 1 ? 'intensity' : `intensity_c${channel}`;
}

/** The vector layout of a study's statistics round: intensity per channel, then the features in the order given. */
export function studyStatisticsPlan(def: StatisticsStudy): StatisticsPlan {
  const stats = def.statistics;
  if (!stats) throw new RangeError('the study has no statistics section');
  const columns = [
    ...(stats.intensity
      ? Array.from({ length: def.model.channels }, (_, c) => ({
          feature: intensityFeature(def.model.channels, c),
          bins: stats.intensity!.bins,
          min: stats.intensity!.min,
          max: stats.intensity!.max,
          per: def.model.inputSize * def.model.inputSize,
        }))
      : []),
    ...(stats.features ?? []).map((f) => ({ feature: f.name, bins: stats.featureBins, min: f.min, max: f.max, per: 1 })),
  ];
  return statisticsPlanSchema.parse({ columns });
}

/** Round 1 of a study with statistics computes them; every other round trains. */
export function isStatisticsRound(def: Pick<StatisticsStudy, 'statistics'>, round: number): boolean {
  return def.statistics !== undefined && round === 1;
}

/** Values a round's update carries before its weight and contribution slots: the statistics, or the model's parameters. */
export function roundPayloadLength(def: StatisticsStudy, round: number, parameters: number): number {
  return isStatisticsRound(def, round) ? statisticsVectorLength(studyStatisticsPlan(def)) : parameters;
}

/** Problems of a statistics section in its study, as paths and messages. */
export function studyStatisticsIssues(def: StatisticsStudy & { aggregation: string }): Array<{ path: string[]; message: string }> {
  const stats = def.statistics;
  if (!stats) return [];
  const issues: Array<{ path: string[]; message: string }> = [];
  if (!stats.intensity && !stats.features) issues.push({ path: ['statistics'], message: 'asks for nothing: give intensity, features or both' });
  if (stats.zScore && !stats.intensity) issues.push({ path: ['statistics', 'zScore'], message: 'needs statistics.intensity: the z-score uses the consortium\'s intensity mean and standard deviation' });
  if (stats.harmonise && !stats.intensity) issues.push({ path: ['statistics', 'harmonise'], message: 'needs statistics.intensity: harmonisation maps each site onto the consortium\'s intensity mean and standard deviation' });
  if (def.aggregation === 'plaintext') {
    issues.push({ path: ['statistics'], message: 'needs an encrypted aggregation (multiparty or ckks): only the consortium\'s totals may be decrypted, and plaintext updates travel as float32, too coarse for exact counts' });
  }
  return issues;
}
