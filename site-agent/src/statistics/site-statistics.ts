import {
  encodeSiteStatistics,
  FEATURE_GROUPS,
  federation,
  intensityFeature,
  isLinearArchitecture,
  MODEL_FEATURE_PREFIX,
  studyStatisticsPlan,
  type FeatureGroup,
  type LinearArchitectureSpec,
  type StudyDefinition,
} from '@federa/shared';
import type { LabeledImages } from '../data/index.js';
import { extractFeatures, featureNames } from '../features/index.js';
import { linearInputs } from '../train/index.js';
import { PolicyRefusalError } from '../policy/index.js';

/** A statistics round asks for a feature this agent does not compute: reported as a task it cannot run. */
export class UnsupportedStatisticError extends Error {
  override readonly name = 'UnsupportedStatisticError';
}

/**
 * This site's statistics vector for a study's statistics round, over all its usable images (training and held-out
 * alike: the statistics describe the data, they train nothing): every channel's preprocessed pixel intensities, the
 * named image features and (statistics.modelFeatures) the linear model's inputs, `modelFeatures` as
 * modelFeatureColumns gives them. A column computed on fewer images than the policy's minStatisticsCount is refused
 * (reason statistics-too-few) before anything is encrypted.
 */
export function siteStatisticsVector(def: StudyDefinition, parts: readonly LabeledImages[], minCount: number, modelFeatures?: readonly Float64Array[]): Float64Array {
  const plan = studyStatisticsPlan(def);
  const values = plan.columns.map((column) => {
    const channel = intensityChannel(def, column.feature);
    if (channel !== undefined) return channelPixels(parts, channel);
    if (def.statistics?.modelFeatures && column.feature.startsWith(MODEL_FEATURE_PREFIX)) {
      const values = modelFeatures?.[Number(column.feature.slice(MODEL_FEATURE_PREFIX.length))];
      if (!values) throw new Error(`statistics column ${column.feature}: the model's features were not computed (modelFeatureColumns)`);
      return values;
    }
    return featureValues(def, parts, column.feature);
  });
  try {
    return encodeSiteStatistics(plan, values, minCount);
  } catch (error) {
    if (error instanceof RangeError && / fewer than the \d+ this site shares a statistic of$/.test(error.message)) {
      throw new PolicyRefusalError({ reason: federation.RefusalReason.REFUSAL_REASON_STATISTICS_TOO_FEW, message: `${error.message} (policy.minStatisticsCount)` });
    }
    throw error;
  }
}

/**
 * The inputs of a study's linear model for statistics.modelFeatures: every image's features after their fixed scale
 * and before any standardize, one column per feature in the model's order. Undefined when the study does not ask.
 */
export async function modelFeatureColumns(def: StudyDefinition, parts: readonly LabeledImages[]): Promise<Float64Array[] | undefined> {
  if (!def.statistics?.modelFeatures) return undefined;
  if (!isLinearArchitecture(def.model.architecture)) {
    throw new UnsupportedStatisticError(`statistics.modelFeatures needs a logistic-regression or linear-svm model, and this study's is ${def.model.architecture}`);
  }
  const { standardize: _computedHere, ...spec } = def.model as LinearArchitectureSpec;
  const matrices = [];
  for (const part of parts) if (part.count > 0) matrices.push(await linearInputs(spec, part));
  const columns = matrices[0]?.columns ?? 0;
  const rows = matrices.reduce((n, m) => n + m.rows, 0);
  const out = Array.from({ length: columns }, () => new Float64Array(rows));
  let row = 0;
  for (const m of matrices) {
    for (let r = 0; r < m.rows; r++, row++) for (let c = 0; c < columns; c++) (out[c] as Float64Array)[row] = m.x[r * columns + c] as number;
  }
  return out;
}

function intensityChannel(def: StudyDefinition, feature: string): number | undefined {
  if (!def.statistics?.intensity) return undefined;
  for (let c = 0; c < def.model.channels; c++) if (intensityFeature(def.model.channels, c) === feature) return c;
  return undefined;
}

/** Channel `channel` of every pixel of every image, images in order. */
function channelPixels(parts: readonly LabeledImages[], channel: number): Float64Array {
  const total = parts.reduce((n, p) => n + p.count * p.height * p.width, 0);
  const out = new Float64Array(total);
  let at = 0;
  for (const part of parts) {
    for (let i = channel; i < part.images.length; i += part.channels) out[at++] = part.images[i] as number;
  }
  return out;
}

/** The feature's value for every image where it is defined (a flat image leaves some texture features undefined). */
function featureValues(def: StudyDefinition, parts: readonly LabeledImages[], feature: string): Float64Array {
  const group = FEATURE_GROUPS.find((g: FeatureGroup) => featureNames(def.model.channels, [g]).includes(feature));
  if (!group) {
    throw new UnsupportedStatisticError(
      `statistics.features: "${feature}" is not a feature this site computes for ${def.model.channels}-channel images (e.g. ${featureNames(def.model.channels).slice(0, 3).join(', ')})`,
    );
  }
  const out: number[] = [];
  for (const part of parts) {
    const size = part.height * part.width * part.channels;
    for (let i = 0; i < part.count; i++) {
      const image = { pixels: part.images.subarray(i * size, (i + 1) * size), height: part.height, width: part.width, channels: part.channels };
      const vector = extractFeatures(image, null, { groups: [group], undefinedValues: 'nan' });
      const value = vector.values[vector.names.indexOf(feature)] as number;
      if (Number.isFinite(value)) out.push(value);
    }
  }
  return Float64Array.from(out);
}

export interface ChannelMoments {
  mean: number;
  std: number;
}

/**
 * The consortium z-score of a statistics study's training rounds: every channel's values become (x − mean) / std
 * with the consortium's intensity statistics, in place of the images as preprocessed. Returns new images.
 */
export function consortiumZScore(data: LabeledImages, moments: readonly ChannelMoments[]): LabeledImages {
  return affinePerChannel(data, moments, () => ({ mean: 0, std: 1 }), 'a z-score');
}

/**
 * Harmonisation onto the consortium: each channel's values are moved from `own` moments (this site's, computed here
 * and never sent) to `target` ones (the consortium's), x' = (x − own.mean) / own.std · target.std + target.mean.
 */
export function harmoniseChannels(data: LabeledImages, own: readonly ChannelMoments[], target: readonly ChannelMoments[]): LabeledImages {
  if (target.length !== data.channels) throw new RangeError(`harmonising ${data.channels}-channel images needs ${data.channels} target statistics, got ${target.length}`);
  return affinePerChannel(data, own, (c) => target[c]!, 'harmonisation');
}

/** Moments of each channel over the given image sets together (population standard deviation). */
export function channelMoments(parts: readonly LabeledImages[], channels: number): ChannelMoments[] {
  return Array.from({ length: channels }, (_, c) => {
    const values = channelPixels(parts, c);
    const mean = values.reduce((a, v) => a + v, 0) / Math.max(1, values.length);
    const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / Math.max(1, values.length);
    return { mean, std: Math.sqrt(variance) };
  });
}

function affinePerChannel(data: LabeledImages, from: readonly ChannelMoments[], to: (channel: number) => ChannelMoments, what: string): LabeledImages {
  if (from.length !== data.channels) throw new RangeError(`${what} of ${data.channels}-channel images needs ${data.channels} channel statistics, got ${from.length}`);
  const images = new Float32Array(data.images.length);
  for (let i = 0; i < images.length; i++) {
    const c = i % data.channels;
    const { mean, std } = from[c]!;
    const target = to(c);
    images[i] = (((data.images[i] as number) - mean) / (std > 0 ? std : 1)) * target.std + target.mean;
  }
  return { ...data, images };
}
