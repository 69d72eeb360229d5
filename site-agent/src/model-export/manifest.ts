import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { architectureTask, describeIssues, isLinearArchitecture, modelSpecSchema, preprocessingSchema, SHA256_HEX, STUDY_ID } from '@federa/shared';

/**
 * `federa-model.json`, written beside the TensorFlow.js files: what the model is (study, round, hash), and
 * everything needed to feed it exactly what the consortium trained on: the model spec, the class names in output
 * order and the study's preprocessing block. `federa-site predict` reads it back, so it is validated as external
 * input: an export may have been copied, edited or made by another agent version.
 */
export const EXPORT_MANIFEST_FILE = 'federa-model.json';
export const MODEL_JSON_FILE = 'model.json';
/** Bumped when a field changes meaning; an agent refuses a version it does not know rather than misread it. */
export const EXPORT_FORMAT_VERSION = 1;

const sha256 = z.string().regex(SHA256_HEX, 'must be a lower-case SHA-256 hex digest');
/** Shard names as the TensorFlow.js converter writes them; nothing that could leave the export folder. */
const shardName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a plain file name inside the export folder');

export const exportManifestSchema = z
  .object({
    format: z.literal('federa-model', { error: 'format must be "federa-model"' }),
    version: z.literal(EXPORT_FORMAT_VERSION, { error: `version must be ${EXPORT_FORMAT_VERSION}: this export was made by another agent version` }),
    studyId: z.string().regex(STUDY_ID, 'must be a study id'),
    studyName: z.string().max(200),
    /** SHA-256 of the study definition the hospital approved (`federa-site studies` shows it). */
    studyHash: sha256,
    round: z.int().min(0),
    model: modelSpecSchema,
    /** Class names in the order of the model's outputs. */
    classNames: z.array(z.string().min(1)).min(2),
    preprocessing: preprocessingSchema,
    /** What the model takes and gives, for whoever runs it without this agent. */
    input: z
      .object({ layout: z.literal('NHWC'), dtype: z.literal('float32'), shape: z.tuple([z.int(), z.int(), z.int()]) })
      .strict(),
    output: z.literal('softmax'),
    weights: z
      .object({
        /** SHA-256 of the float32 little-endian weights in the model spec's parameter order: the site's decrypted global model. */
        sha256,
        parameters: z.int().min(1),
        /** The shared package's WEIGHTS_LAYOUT_VERSION the parameter order follows. */
        layoutVersion: z.int().min(1),
      })
      .strict(),
    /** The TensorFlow.js LayersModel files; the weight shards in order. */
    files: z
      .object({
        modelJson: z.literal(MODEL_JSON_FILE),
        shards: z.array(z.object({ path: shardName, bytes: z.int().min(1), sha256 }).strict()).min(1),
      })
      .strict(),
    /**
     * The preprocessing code that made the training tensors: our pipeline version and libvips'. Another version
     * may resample slightly differently, so predict says so when it runs with another one.
     */
    pipeline: z.object({ preprocessVersion: z.int(), vips: z.string(), hash: sha256 }).strict(),
    exportedAt: z.iso.datetime(),
    exportedBy: z.object({ siteId: z.string(), agentVersion: z.string() }).strict(),
  })
  .strict()
  .superRefine((manifest, ctx) => {
    // Format version 1 describes one softmax vector per image; a segmentation model's per-pixel output would be misread.
    if (architectureTask(manifest.model.architecture) !== 'classification') {
      ctx.addIssue({ code: 'custom', path: ['model', 'architecture'], message: `is ${manifest.model.architecture}, a segmentation model: exports of segmentation models are not supported yet` });
    } else if (isLinearArchitecture(manifest.model.architecture)) {
      ctx.addIssue({ code: 'custom', path: ['model', 'architecture'], message: `is ${manifest.model.architecture}, a linear model on image features: it has no TensorFlow.js graph to export or run` });
    }
    if (manifest.classNames.length !== manifest.model.classes) {
      ctx.addIssue({ code: 'custom', path: ['classNames'], message: `lists ${manifest.classNames.length} classes but model.classes is ${manifest.model.classes}` });
    }
    const { inputSize, channels } = manifest.model;
    if (manifest.input.shape.join(',') !== [inputSize, inputSize, channels].join(',')) {
      ctx.addIssue({ code: 'custom', path: ['input', 'shape'], message: `is [${manifest.input.shape.join(', ')}] but the model takes ${inputSize}x${inputSize}x${channels}` });
    }
  });

export type ExportManifest = z.output<typeof exportManifestSchema>;

/** A model folder that cannot be used: says which file and what is wrong with it. */
export class ExportedModelError extends Error {
  override readonly name = 'ExportedModelError';
}

export async function readExportManifest(dir: string): Promise<ExportManifest> {
  const path = join(dir, EXPORT_MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ExportedModelError(`${path} is missing: --model must be a folder written by \`federa-site model export\``);
    }
    throw new ExportedModelError(`cannot read ${path}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ExportedModelError(`${path} is not JSON (${(error as Error).message}); export the model again`);
  }
  const parsed = exportManifestSchema.safeParse(raw);
  if (!parsed.success) throw new ExportedModelError(`${path} is not a model export:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  return parsed.data;
}
