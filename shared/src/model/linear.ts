import { z } from 'zod';
import { baseSpecFields, type ParameterShape } from './types.js';

/**
 * Feature groups a linear model can use, in the order their values appear in each channel's block of the feature
 * vector. The site agent extracts them (site-agent features: first-order grey-level statistics, Sobel gradient and
 * edge density, GLCM texture, uniform LBP histogram).
 */
export const FEATURE_GROUPS = ['first-order', 'edges', 'glcm', 'lbp'] as const;
export type FeatureGroup = (typeof FEATURE_GROUPS)[number];

/**
 * Values each group contributes per image channel. The weight layout depends on them, so the coordinator (which has
 * no extractor) must know them; the site's extractor is held to these counts by its tests and checked at run time.
 * Changing one changes every linear model's layout: bump WEIGHTS_LAYOUT_VERSION.
 */
export const FEATURE_GROUP_SIZES: Readonly<Record<FeatureGroup, number>> = { 'first-order': 19, edges: 6, glcm: 12, lbp: 10 };

const featureGroupsSchema = z
  .array(z.enum(FEATURE_GROUPS, { error: `features must list groups among: ${FEATURE_GROUPS.join(', ')}` }), { error: 'features must be a list of feature groups' })
  .min(1, 'features must name at least one group')
  .refine((groups) => new Set(groups).size === groups.length, 'features lists a group twice')
  // One spelling per selection (the fixed order), so two spellings are never two models with one layout; a refine,
  // not a transform, since the study definition's API schema must be representable as JSON Schema.
  .refine((groups) => groups.every((g, i) => i === 0 || FEATURE_GROUPS.indexOf(g) > FEATURE_GROUPS.indexOf(groups[i - 1]!)), `features must list groups in the order ${FEATURE_GROUPS.join(', ')}`)
  .default(() => [...FEATURE_GROUPS]);

const edgeThresholdSchema = z.union(
  [z.strictObject({ relative: z.number().min(0).max(1) }), z.strictObject({ absolute: z.number().min(0).max(1) })],
  { error: 'edgeThreshold must be {relative: 0..1} (share of the region\'s largest gradient) or {absolute: 0..1} (grey levels per pixel)' },
);

const finiteList = (what: string) => z.array(z.number({ error: `${what} must hold numbers` }).refine(Number.isFinite, `${what} must hold finite numbers`));

/** Options shared by both linear architectures; every one changes what the weights mean, so all are in the spec. */
const linearOptions = {
  ...baseSpecFields,
  /** Which feature groups to extract, per channel. */
  features: featureGroupsSchema,
  /** 'image': features of the whole image; 'mask': of the pixels inside the structure maskSegment names. */
  region: z.enum(['image', 'mask'], { error: "region must be 'image' or 'mask'" }).default('image'),
  /**
   * With region 'mask': the structure whose pixels the features describe, as its masks name it (a DICOM SEG's
   * Segment Label, an RT Structure Set's ROI Name; compared trimmed and case-insensitively). Every site reads the
   * same structure, so the name is part of what the weights mean.
   */
  maskSegment: z.string({ error: 'maskSegment must be a string' }).trim().min(1, 'maskSegment must name a structure').max(64, 'maskSegment must be at most 64 characters').optional(),
  /** With region 'mask': the PNG mask value that marks the structure; omitted: every non-zero PNG mask pixel. */
  maskLabel: z.number().int('maskLabel must be an integer').min(1, 'maskLabel must be >= 1').max(255, 'maskLabel must be <= 255').optional(),
  /** Bins of the [0, 1] histogram behind the first-order entropy and uniformity. */
  histogramBins: z.number().int('histogramBins must be an integer').min(2, 'histogramBins must be >= 2').max(256, 'histogramBins must be <= 256').default(32),
  /** Grey levels the GLCM quantises [0, 1] into. */
  glcmLevels: z.number().int('glcmLevels must be an integer').min(2, 'glcmLevels must be >= 2').max(64, 'glcmLevels must be <= 64').default(16),
  /** GLCM pixel distances; the texture values average over these and the 4 angles. */
  glcmDistances: z
    .array(z.number().int('glcmDistances must be integers').min(1, 'glcmDistances must be >= 1').max(16, 'glcmDistances must be <= 16'))
    .min(1, 'glcmDistances must list at least one distance')
    .max(4, 'glcmDistances must list at most 4 distances')
    .default(() => [1]),
  /** Edge density threshold: a share of the region's largest gradient, or absolute grey levels per pixel. */
  edgeThreshold: edgeThresholdSchema.default(() => ({ relative: 0.25 })),
  /** L2 penalty (l2 / 2)·||W||² on the weights (not the biases) in the training objective. */
  l2: z.number({ error: 'l2 must be a number' }).min(0, 'l2 must be >= 0').max(10, 'l2 must be <= 10').default(1e-3),
  /**
   * Optional consortium standardisation, applied after the fixed per-feature scale: z = (scaled - mean) / std, one
   * value per feature in the layout's order. The consortium computes them from every site's summed feature
   * statistics; a site never standardises on its own data, or the weights would mean different things at each site.
   */
  standardize: z
    .strictObject({ mean: finiteList('standardize.mean'), std: finiteList('standardize.std') })
    .refine((s) => s.std.every((v) => v >= 0), 'standardize.std values must be >= 0')
    .optional(),
};

function linearSpecIssues(
  spec: { channels: number; features: FeatureGroup[]; region: string; maskSegment?: string | undefined; maskLabel?: number | undefined; standardize?: { mean: number[]; std: number[] } | undefined },
  ctx: z.RefinementCtx,
): void {
  for (const key of ['maskSegment', 'maskLabel'] as const) {
    if (spec[key] !== undefined && spec.region !== 'mask') ctx.addIssue({ code: 'custom', path: [key], message: `${key} applies only with region: 'mask'` });
  }
  if (spec.region === 'mask' && spec.maskSegment === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['maskSegment'],
      message: "region: 'mask' needs maskSegment: the structure every image's mask outlines, by its SEG Segment Label or RT Structure Set ROI Name (e.g. \"lung\")",
    });
  }
  if (spec.standardize !== undefined) {
    const features = linearFeatureCount(spec);
    for (const key of ['mean', 'std'] as const) {
      const given = spec.standardize[key].length;
      if (given !== features) {
        ctx.addIssue({ code: 'custom', path: ['standardize', key], message: `has ${given} values but the model has ${features} features (${spec.channels} channel(s) x ${spec.features.join(', ')})` });
      }
    }
  }
}

export const logisticRegressionSpecSchema = z
  .strictObject({ architecture: z.literal('logistic-regression'), ...linearOptions })
  .superRefine(linearSpecIssues);

export const linearSvmSpecSchema = z.strictObject({ architecture: z.literal('linear-svm'), ...linearOptions }).superRefine(linearSpecIssues);

/** Logistic regression on hand-crafted image features: sigmoid (two classes) or softmax cross-entropy. */
export type LogisticRegressionSpec = z.infer<typeof logisticRegressionSpecSchema>;
/** Linear SVM on hand-crafted image features: one-vs-rest hinge loss. */
export type LinearSvmSpec = z.infer<typeof linearSvmSpecSchema>;
export type LinearArchitectureSpec = LogisticRegressionSpec | LinearSvmSpec;

/** Features per image: channels x the selected groups' sizes (the order: channel, then group, then feature). */
export function linearFeatureCount(spec: { channels: number; features: readonly FeatureGroup[] }): number {
  return spec.channels * spec.features.reduce((sum, group) => sum + FEATURE_GROUP_SIZES[group], 0);
}

/** Model outputs: one for two classes (the score of class 1), else one per class. */
export function linearOutputCount(spec: { classes: number }): number {
  return spec.classes === 2 ? 1 : spec.classes;
}

/**
 * `linear/kernel` [features, outputs] (the dense-layer convention: row f holds feature f's weight for every output),
 * then `linear/bias` [outputs]. Both start at zero: the losses are convex in the parameters, so there is no symmetry
 * to break, and zero is the one starting point that favours no class and no feature.
 */
export function linearParameters(spec: LinearArchitectureSpec): ParameterShape[] {
  const outputs = linearOutputCount(spec);
  return [
    { name: 'linear/kernel', shape: [linearFeatureCount(spec), outputs], init: 'zeros' },
    { name: 'linear/bias', shape: [outputs], init: 'zeros' },
  ];
}
