import { createHash } from 'node:crypto';
import { z } from 'zod';
import { serverOptimizerSchema } from '../fedavg/server-optimizer.js';
import { architectureTask, modelSpecSchema } from '../model/index.js';
import { resolveStudyPrivacy, studyPrivacyIssues, studyPrivacySchema } from '../privacy/study-privacy.js';
import { studyStatisticsIssues, studyStatisticsSchema } from '../statistics/study-statistics.js';
import { canonicalJson } from './canonical-json.js';
import { preprocessingSchema } from './preprocessing.js';

/** Site ids double as certificate names and folder names: keep them to a safe, boring alphabet. */
export const siteIdSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a site id is 1-63 characters of a-z, 0-9 and "-", starting with a letter or digit');

/**
 * Study ids as the coordinator makes them (UUIDs), and as the sites use them in folder names: refusing anything
 * else keeps a coordinator from steering a site's files outside its state folder ("../..").
 */
export const STUDY_ID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/** Throws for a study id that is not one the coordinator makes. */
export function assertStudyId(studyId: string, where: string): string {
  if (!STUDY_ID.test(studyId)) throw new RangeError(`${where}: "${studyId.slice(0, 80)}" is not a study id (1-64 letters, digits and "-")`);
  return studyId;
}

/**
 * Text a person reads (names): trimmed, bounded, no control characters (a NUL is refused by PostgreSQL) and valid
 * UTF-16 (a lone surrogate cannot be stored as UTF-8), so bad input is a 400 naming the field, never a database error.
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function textSchema(max: number) {
  return z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((value) => !/[\u0000-\u001f\u007f]/.test(value), 'must not contain control characters')
    .refine((value) => !LONE_SURROGATE.test(value), 'must be valid Unicode text (it holds a lone surrogate)');
}

/**
 * What a researcher declares to run a study. Everything that changes what sites compute is in here, so the
 * study's hash (which site policies approve) covers it.
 */
export const studyDefinitionSchema = z
  .object({
    name: textSchema(200),
    model: modelSpecSchema,
    classNames: z.array(textSchema(64)).min(2),
    rounds: z.int().min(1).max(10_000),
    /** The fewest connected sites a round opens with, and the fewest updates it is aggregated from. */
    minSites: z.int().min(1).max(10_000),
    /**
     * The most sites a round invites (all eligible connected sites when unset): with more connected, each round
     * draws this many, by a hash of the study, round and site, so the work spreads over the consortium.
     */
    targetSites: z.int().min(1).max(10_000).optional(),
    /** Local work per round: full passes over the site's training data, or (instead) a number of optimiser steps. */
    localEpochs: z.int().min(1).max(1_000).optional(),
    /**
     * Optimiser steps (batches) per round, drawn by cycling reshuffled epochs. Makes every site do the same amount
     * of work per round whatever its data size, so large sites do not dominate by drifting further.
     */
    localSteps: z.int().min(1).max(1_000_000).optional(),
    batchSize: z.int().min(1).max(4_096),
    learningRate: z.number().positive().max(10),
    /** Local optimiser; its state is reset every round, so only weights ever leave a site. */
    optimizer: z.enum(['sgd', 'adam']).default('adam'),
    /** Training-time augmentation at every site (never applied to validation or evaluation). */
    augmentation: z
      .object({
        flips: z.boolean().default(false),
        rotationDegrees: z.number().min(0).max(45).default(0),
        intensityJitter: z.number().min(0).max(0.5).default(0),
      })
      .strict()
      .optional(),
    /** Weighted cross-entropy: 'balanced' from each site's own class counts, or one weight per class. */
    classWeights: z.union([z.literal('balanced'), z.array(z.number().positive().max(1000))]).optional(),
    /** FedProx proximal term mu (0: plain FedAvg); keeps non-IID sites from drifting away from the global model. */
    fedProxMu: z.number().min(0).max(10).default(0),
    /** How every site turns its images into model input; the defaults are the pipeline from before it was declarable. */
    preprocessing: preprocessingSchema.prefault({}),
    /**
     * How updates are combined. 'multiparty' (the default): each site holds its own key share, updates are encrypted
     * under the collective key, the coordinator adds them, and the sum is switched to a key only the round's sites
     * hold, so no single party (site or coordinator) can decrypt another site's update. 'ckks': one CKKS key shared
     * by every site (smaller uploads, no key-switching step; any site with the coordinator can read every update).
     * 'plaintext' sums clear vectors; for development only, and recorded as such in the study.
     */
    aggregation: z.enum(['multiparty', 'ckks', 'plaintext']).default('multiparty'),
    /** A round that has not heard from every assigned site by then closes with whoever reported. */
    roundTimeoutSeconds: z.int().min(5).max(7 * 24 * 3600).default(900),
    /**
     * At a deadline with fewer than minSites updates: 'fail' the round and the study (when unset), or 'extend-once'
     * by another roundTimeoutSeconds, then fail if still short.
     */
    deadlineAction: z.enum(['fail', 'extend-once']).optional(),
    /** Restrict the study to these sites; by default every site connected when a round opens takes part. */
    sites: z.array(siteIdSchema).min(1).optional(),
    /** Differential privacy (none when unset): see shared/src/privacy/study-privacy.ts. */
    privacy: studyPrivacySchema.optional(),
    /**
     * A server optimizer (FedAvgM, FedAdagrad, FedAdam, FedYogi) every site applies to the decrypted average update
     * after each round, identically, keeping its state (shared/src/fedavg/server-optimizer.ts); plain FedAvg when unset.
     */
    serverOptimizer: serverOptimizerSchema.optional(),
    /**
     * Segmentation studies (a segmentation architecture such as unet): classNames[0] is the background and the others
     * name the segments the sites' masks carry (DICOM SEG segment labels, RT structure names), matched by name.
     */
    segmentation: z
      .object({
        /** An image no mask covers: 'reject' it (the default) or train on it as all background. */
        unmaskedImages: z.enum(['reject', 'background']).default('reject'),
        /** Soft Dice plus class-balanced cross-entropy (the default), or soft Dice alone. */
        loss: z.enum(['dice+cross-entropy', 'dice']).default('dice+cross-entropy'),
      })
      .strict()
      .optional(),
    /**
     * Federated statistics in round 1 (intensity per channel, image features), of which only the consortium's totals
     * are decrypted; optionally a consortium z-score for the training rounds that follow. See
     * shared/src/statistics/study-statistics.ts. With rounds: 1 the study computes statistics only.
     */
    statistics: studyStatisticsSchema.optional(),
  })
  .strict()
  .superRefine((def, ctx) => {
    if (architectureTask(def.model.architecture) === 'segmentation') {
      for (const issue of segmentationIssues(def)) ctx.addIssue({ code: 'custom', ...issue });
    } else if (def.segmentation !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['segmentation'], message: `applies to segmentation models only, and ${def.model.architecture} is a classifier` });
    }
    if (def.localEpochs !== undefined && def.localSteps !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['localSteps'],
        message: 'cannot be combined with localEpochs: give exactly one of localEpochs (full passes) or localSteps (optimiser steps)',
      });
    }
    for (const issue of studyStatisticsIssues(def)) ctx.addIssue({ code: 'custom', ...issue });
    if (def.serverOptimizer && def.aggregation === 'plaintext') {
      ctx.addIssue({
        code: 'custom',
        path: ['serverOptimizer'],
        message: 'runs at the sites on the decrypted sum, and a plaintext study\'s coordinator publishes plain FedAvg itself: use aggregation multiparty or ckks',
      });
    }
    const statisticsOnly = def.statistics !== undefined && def.rounds === 1;
    if (def.localEpochs === undefined && def.localSteps === undefined && !statisticsOnly) {
      ctx.addIssue({
        code: 'custom',
        path: ['localEpochs'],
        message: 'is required unless localSteps is given: give exactly one of localEpochs (full passes) or localSteps (optimiser steps)',
      });
    }
    if (def.classNames.length !== def.model.classes) {
      ctx.addIssue({
        code: 'custom',
        path: ['classNames'],
        message: `lists ${def.classNames.length} classes but model.classes is ${def.model.classes}`,
      });
    }
    if (Array.isArray(def.classWeights) && def.classWeights.length !== def.model.classes) {
      ctx.addIssue({
        code: 'custom',
        path: ['classWeights'],
        message: `lists ${def.classWeights.length} weights but model.classes is ${def.model.classes}`,
      });
    }
    if (new Set(def.classNames).size !== def.classNames.length) {
      ctx.addIssue({ code: 'custom', path: ['classNames'], message: 'class names must be unique' });
    }
    if (def.targetSites !== undefined && def.targetSites < def.minSites) {
      ctx.addIssue({ code: 'custom', path: ['targetSites'], message: `is ${def.targetSites} but minSites is ${def.minSites}: a round cannot invite fewer sites than it needs` });
    }
    if (def.targetSites !== undefined && def.sites && def.targetSites > def.sites.length) {
      ctx.addIssue({ code: 'custom', path: ['targetSites'], message: `is ${def.targetSites} but only ${def.sites.length} sites are listed` });
    }
    for (const issue of studyPrivacyIssues(def)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    if (def.sites && def.sites.length < def.minSites) {
      ctx.addIssue({
        code: 'custom',
        path: ['minSites'],
        message: `is ${def.minSites} but only ${def.sites.length} sites are listed`,
      });
    }
  });

/**
 * What a segmentation study cannot have: a first class other than the background (masks' pixel 0), per-class loss
 * weights (the loss balances classes per image itself) or differential privacy (per-example gradients of the U-Net's
 * transposed convolutions are not implemented).
 */
function segmentationIssues(def: { classNames: string[]; classWeights?: unknown; privacy?: unknown; model: { architecture: string } }): Array<{ path: string[]; message: string }> {
  const issues: Array<{ path: string[]; message: string }> = [];
  if (def.classNames[0]?.toLowerCase() !== 'background') {
    issues.push({ path: ['classNames'], message: `of a segmentation study starts with "background" (mask value 0), then the segments; got "${def.classNames[0] ?? ''}" first` });
  }
  if (def.classWeights !== undefined) {
    issues.push({ path: ['classWeights'], message: 'is for classification: a segmentation loss weighs the classes present in each image equally' });
  }
  if (def.privacy !== undefined) {
    issues.push({ path: ['privacy'], message: `differential privacy is not available for segmentation models (${def.model.architecture}) yet: remove privacy, or run a classification study` });
  }
  return issues;
}

export type StudyDefinition = z.output<typeof studyDefinitionSchema>;
export type StudyDefinitionInput = z.input<typeof studyDefinitionSchema>;

/**
 * The definition as the coordinator stores it and the hospitals approve it: a privacy target resolved into the noise
 * multiplier every site runs with (see resolveStudyPrivacy). Throws RangeError, naming privacy.targetEpsilon or
 * privacy.noiseMultiplier, when the target cannot be met.
 */
export function resolveStudyDefinition(def: StudyDefinition): StudyDefinition {
  const privacy = resolveStudyPrivacy(def);
  return privacy ? { ...def, privacy } : def;
}

export function studyHash(def: StudyDefinition): string {
  return createHash('sha256').update(canonicalJson(def)).digest('hex');
}

/** Formats zod issues as "field.path: message" lines, so every bad input names what and where. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    return `${where}: ${issue.message}`;
  });
}

/** The definition as it travels to sites: canonical JSON, whose SHA-256 is the study hash. */
export function studyDefinitionJson(def: StudyDefinition): string {
  return canonicalJson(def);
}

/** A definition that does not hash to what it claims, or that this agent would read differently. */
export class StudyDefinitionMismatchError extends Error {
  override readonly name = 'StudyDefinitionMismatchError';
}

/**
 * What a site does with the definition a task carries before it computes anything: the bytes must hash to the
 * study hash (the one the hospital approved), parse under the strict schema, and be exactly what this agent
 * re-serialises, so no setting can be added, dropped or defaulted differently between approval and training.
 */
export function verifyStudyDefinition(json: string, expectedHash: string): StudyDefinition {
  if (json.length === 0) {
    throw new StudyDefinitionMismatchError('the task carries no study definition (a coordinator older than site approval); it cannot be checked against an approved hash');
  }
  const actual = createHash('sha256').update(json, 'utf8').digest('hex');
  if (actual !== expectedHash) {
    throw new StudyDefinitionMismatchError(`the study definition hashes to ${actual}, but the task names study hash ${expectedHash}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (error) {
    throw new StudyDefinitionMismatchError(`the study definition is not JSON: ${(error as Error).message}`);
  }
  const parsed = studyDefinitionSchema.safeParse(raw);
  if (!parsed.success) {
    throw new StudyDefinitionMismatchError(`the study definition is not one this agent can run: ${describeIssues(parsed.error).join('; ')}`);
  }
  if (canonicalJson(parsed.data) !== json) {
    throw new StudyDefinitionMismatchError(
      'the study definition is not in canonical form, or this agent fills in settings it does not state: upgrade the site agent to the coordinator\'s version',
    );
  }
  return parsed.data;
}
