import { z } from 'zod';
import { linearFeatureCount, type FeatureGroup } from '../model/linear.js';
import { isLinearArchitecture } from '../model/registry.js';
import { ARCHITECTURE_NAMES, type Architecture } from '../model/spec.js';
import { statisticsPlanSchema, statisticsVectorLength, type FeatureStatistics, type StatisticsPlan } from './federated-statistics.js';

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
    /**
     * For a logistic-regression or linear-svm model: the consortium's mean and standard deviation of every feature the
     * model reads (after the features' fixed scale), and the training rounds standardise the features with them, z =
     * (scaled − mean) / std, as the model's `standardize` does: a federated StandardScaler for the model's inputs.
     */
    modelFeatures: z.boolean().default(false),
  })
  .strict();

export type StudyStatistics = z.output<typeof studyStatisticsSchema>;

/** What a definition needs for its statistics: the preprocessed image grid and the statistics section. */
interface StatisticsStudy {
  model: { inputSize: number; channels: number; architecture?: string; features?: readonly FeatureGroup[]; standardize?: unknown };
  statistics?: StudyStatistics | undefined;
}

/** The intensity column of channel c: "intensity" for a grey study, "intensity_c<k>" per channel otherwise. */
export function intensityFeature(channels: number, channel: number): string {
  return channels === 1 ? 'intensity' : `intensity_c${channel}`;
}

/** Prefix of the columns of statistics.modelFeatures: model_feature_<i>, i the feature's index in the model's input. */
export const MODEL_FEATURE_PREFIX = 'model_feature_';

/**
 * The histogram range of a model feature column. The fixed scale maps every feature into [-1, 1] for pixels in [0, 1];
 * the margin keeps a value just outside in its own bins. The mean and standard deviation come from the sums, exact
 * whatever the range.
 */
const MODEL_FEATURE_RANGE = { min: -2, max: 2 } as const;

/** Inputs of the study's linear model, or 0 for any other architecture. */
function modelFeatureCount(model: StatisticsStudy['model']): number {
  const architecture = model.architecture as Architecture | undefined;
  if (architecture === undefined || !ARCHITECTURE_NAMES.includes(architecture) || !isLinearArchitecture(architecture) || model.features === undefined) return 0;
  return linearFeatureCount({ channels: model.channels, features: model.features });
}

/**
 * The vector layout of a study's statistics round: intensity per channel, then the features in the order given, then
 * (statistics.modelFeatures) the linear model's inputs in their order.
 */
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
    ...(stats.modelFeatures
      ? Array.from({ length: modelFeatureCount(def.model) }, (_, i) => ({ feature: `${MODEL_FEATURE_PREFIX}${i}`, bins: stats.featureBins, ...MODEL_FEATURE_RANGE, per: 1 }))
      : []),
  ];
  return statisticsPlanSchema.parse({ columns });
}

/**
 * The `standardize` a study with statistics.modelFeatures trains its linear model with: the consortium's mean and
 * standard deviation of each model feature, in the model's input order.
 */
export function modelFeatureStandardize(
  def: StatisticsStudy,
  features: ReadonlyArray<Pick<FeatureStatistics, 'feature'> & { mean: number | null; std: number | null }>,
): { mean: number[]; std: number[] } {
  const count = modelFeatureCount(def.model);
  if (!def.statistics?.modelFeatures || count === 0) throw new RangeError('the study does not compute its model features\' statistics (statistics.modelFeatures)');
  const byName = new Map(features.map((f) => [f.feature, f]));
  const mean: number[] = [];
  const std: number[] = [];
  for (let i = 0; i < count; i++) {
    const stat = byName.get(`${MODEL_FEATURE_PREFIX}${i}`);
    if (!stat || stat.mean === null || stat.std === null || !Number.isFinite(stat.mean) || !Number.isFinite(stat.std)) throw new RangeError(`the consortium statistics have no mean and standard deviation of model feature ${i}`);
    mean.push(stat.mean);
    std.push(stat.std);
  }
  return { mean, std };
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
  if (!stats.intensity && !stats.features && !stats.modelFeatures) issues.push({ path: ['statistics'], message: 'asks for nothing: give intensity, features, modelFeatures or several' });
  for (const [i, feature] of (stats.features ?? []).entries()) {
    if (feature.name.startsWith(MODEL_FEATURE_PREFIX)) {
      issues.push({ path: ['statistics', 'features', String(i), 'name'], message: `"${MODEL_FEATURE_PREFIX}" names the columns of statistics.modelFeatures; give the feature its extractor name (e.g. firstorder_mean)` });
    }
  }
  if (stats.modelFeatures) {
    if (modelFeatureCount(def.model) === 0) {
      issues.push({ path: ['statistics', 'modelFeatures'], message: 'needs a logistic-regression or linear-svm model: it standardises the features such a model reads' });
    } else if (def.model.standardize !== undefined) {
      issues.push({ path: ['statistics', 'modelFeatures'], message: 'the model already gives standardize: drop one of the two (modelFeatures computes it from the consortium)' });
    }
    if (stats.zScore || stats.harmonise) {
      issues.push({
        path: ['statistics', 'modelFeatures'],
        message: 'cannot be combined with zScore or harmonise: the features\' statistics are computed in round 1 on the images before either applies, and would not describe the images the model trains on',
      });
    }
  }
  if (stats.zScore && !stats.intensity) issues.push({ path: ['statistics', 'zScore'], message: 'needs statistics.intensity: the z-score uses the consortium\'s intensity mean and standard deviation' });
  if (stats.harmonise && !stats.intensity) issues.push({ path: ['statistics', 'harmonise'], message: 'needs statistics.intensity: harmonisation maps each site onto the consortium\'s intensity mean and standard deviation' });
  if (def.aggregation === 'plaintext') {
    issues.push({ path: ['statistics'], message: 'needs an encrypted aggregation (multiparty or ckks): only the consortium\'s totals may be decrypted, and plaintext updates travel as float32, too coarse for exact counts' });
  }
  return issues;
}
