import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceFile, sha256Hex } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { z } from 'zod';
import { ExportedModelError, MODEL_JSON_FILE } from './manifest.js';

/**
 * A TensorFlow.js LayersModel on disk in the standard layout (`model.json` + binary weight shards), written and
 * read without tfjs-node (which hospitals may not have): `tf.loadLayersModel('file://…/model.json')` under
 * tfjs-node, `tf.loadLayersModel('https://…/model.json')` in a browser and Python's tensorflowjs converter all
 * read this layout.
 */

/** The converter's shard size: small enough for browsers to cache and fetch in parallel. */
const SHARD_BYTES = 4 * 1024 * 1024;

export interface WrittenShard {
  path: string;
  bytes: number;
  sha256: string;
}

export interface SavedLayersModel {
  shards: WrittenShard[];
  /** SHA-256 of all weight bytes in order (the shards concatenated). */
  weightsSha256: string;
}

/**
 * Saves `model` into `dir` through a custom save handler: model.json and group1-shardXofY.bin files, each replaced
 * atomically and owner-only (the weights are the consortium's model, as confidential as the site's decrypted copy).
 */
export async function saveLayersModel(model: tfl.LayersModel, dir: string, mode: number): Promise<SavedLayersModel> {
  let saved: SavedLayersModel | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      if (!(artifacts.modelTopology && typeof artifacts.modelTopology === 'object' && !(artifacts.modelTopology instanceof ArrayBuffer))) {
        throw new Error('TensorFlow.js gave no JSON topology for the model');
      }
      const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData ?? new ArrayBuffer(0)));
      const count = Math.max(1, Math.ceil(weights.byteLength / SHARD_BYTES));
      const shards: WrittenShard[] = [];
      for (let i = 0; i < count; i++) {
        const bytes = weights.subarray(i * SHARD_BYTES, Math.min(weights.byteLength, (i + 1) * SHARD_BYTES));
        const path = `group1-shard${i + 1}of${count}.bin`;
        await replaceFile(join(dir, path), bytes, mode);
        shards.push({ path, bytes: bytes.byteLength, sha256: sha256Hex(bytes) });
      }
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tfl.version_layers}`,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: shards.map((s) => s.path), weights: artifacts.weightSpecs ?? [] }],
      };
      await replaceFile(join(dir, MODEL_JSON_FILE), `${JSON.stringify(modelJson)}\n`, mode);
      saved = { shards, weightsSha256: sha256Hex(weights) };
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  if (!saved) throw new Error('TensorFlow.js did not call the save handler');
  return saved;
}

/** The part of model.json this reader relies on; the topology itself is tfjs-layers' to check. */
const modelJsonSchema = z.object({
  modelTopology: z.record(z.string(), z.unknown()),
  format: z.string().optional(),
  weightsManifest: z
    .array(
      z.object({
        // Plain names only: a manifest must not make this reader open files outside the model folder.
        paths: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a plain file name in the model folder')).min(1),
        weights: z.array(z.object({ name: z.string(), shape: z.array(z.int().min(0)), dtype: z.string() }).loose()),
      }),
    )
    .min(1),
});

export interface LoadedLayersModel {
  model: tfl.LayersModel;
  /** SHA-256 of all weight bytes in manifest order, to compare with what the export recorded. */
  weightsSha256: string;
}

/**
 * Loads the LayersModel in `dir` through a custom load handler reading model.json and its shards from disk
 * (tfjs-core alone has no file:// loader). The backend must be initialised first.
 */
export async function loadLayersModel(dir: string): Promise<LoadedLayersModel> {
  const path = join(dir, MODEL_JSON_FILE);
  let weightsSha256 = '';
  const handler: tf.io.IOHandler = {
    load: async () => {
      const modelJson = await readModelJson(path);
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const parts: Uint8Array[] = [];
        for (const group of manifest) {
          for (const shard of group.paths) {
            try {
              parts.push(await readFile(join(dir, shard)));
            } catch (error) {
              throw new ExportedModelError(`cannot read weight shard ${join(dir, shard)} named in ${path}: ${(error as Error).message}`);
            }
          }
        }
        const weights = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
        let offset = 0;
        for (const part of parts) {
          weights.set(part, offset);
          offset += part.byteLength;
        }
        weightsSha256 = sha256Hex(weights);
        return [tf.io.getWeightSpecs(manifest), weights.buffer];
      });
    },
  };
  try {
    const model = await tfl.loadLayersModel(handler, { strict: true });
    return { model, weightsSha256 };
  } catch (error) {
    if (error instanceof ExportedModelError) throw error;
    throw new ExportedModelError(`${path} is not a TensorFlow.js LayersModel this agent can load: ${(error as Error).message}; export the model again`);
  }
}

async function readModelJson(path: string): Promise<tf.io.ModelJSON> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ExportedModelError(missing ? `${path} is missing: export the model again` : `cannot read ${path}: ${(error as Error).message}`);
  }
  const parsed = modelJsonSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
    throw new ExportedModelError(`${path} is not a TensorFlow.js model.json: ${issues.join('; ')}`);
  }
  // The weight specs' dtypes and the topology are checked by tfjs-layers as it builds the model.
  return raw as tf.io.ModelJSON;
}
