import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { parameterCount, sha256Hex } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { mapWithConcurrency } from '../data/dataset/concurrency.js';
import { decodeImage, DicomRejection, ImageRejection, listFiles, pipelineHash, PREPROCESS_VERSION, preprocessImage } from '../data/index.js';
import { initBackend, type BackendInfo, type BackendPreference } from '../train/index.js';
import { ExportedModelError, readExportManifest, type ExportManifest } from './manifest.js';
import { loadLayersModel } from './tfjs-files.js';

/** Images per forward pass, as in the site's evaluation: bounds memory on large inputs. */
const BATCH_SIZE = 64;
/** Files decoded at once; sharp and the codecs are the slow part. */
const DECODE_CONCURRENCY = 8;

export interface ExportedModel {
  dir: string;
  manifest: ExportManifest;
  model: tfl.LayersModel;
  backend: BackendInfo;
  /** Things the caller should tell the user but that do not stop prediction. */
  warnings: string[];
  dispose(): void;
}

/**
 * Loads a folder written by `exportGlobalModel`: its manifest, then the TensorFlow.js model from model.json and the
 * shards, each shard checked against the SHA-256 the export recorded (a copied or edited folder is refused, not run)
 * and the model's input and output checked against the spec.
 */
export async function loadExportedModel(dir: string, backend: BackendPreference = 'auto'): Promise<ExportedModel> {
  const root = resolve(dir);
  const manifest = await readExportManifest(root);
  for (const shard of manifest.files.shards) {
    const path = join(root, shard.path);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new ExportedModelError(`cannot read weight shard ${path}: ${(error as Error).message}; export the model again`);
    }
    if (bytes.byteLength !== shard.bytes || sha256Hex(bytes) !== shard.sha256) {
      throw new ExportedModelError(`${path} is not the shard the export wrote (size or SHA-256 differs); export the model again`);
    }
  }
  const info = await initBackend(backend);
  const { model, weightsSha256 } = await loadLayersModel(root);
  try {
    if (weightsSha256 !== manifest.weights.sha256) {
      throw new ExportedModelError(`the weights model.json lists in ${root} are not the exported global model (sha256 ${weightsSha256}, expected ${manifest.weights.sha256})`);
    }
    const { inputSize, channels, classes } = manifest.model;
    const input = model.inputs[0]?.shape.slice(1).join('x');
    const output = model.outputs[0]?.shape.slice(1).join('x');
    if (model.inputs.length !== 1 || input !== `${inputSize}x${inputSize}x${channels}` || model.outputs.length !== 1 || output !== String(classes)) {
      throw new ExportedModelError(
        `model.json in ${root} takes ${input ?? 'nothing'} and gives ${output ?? 'nothing'}, but federa-model.json says ${inputSize}x${inputSize}x${channels} in, ${classes} classes out`,
      );
    }
    if (model.countParams() !== parameterCount(manifest.model)) {
      throw new ExportedModelError(`model.json in ${root} has ${model.countParams()} parameters but the ${manifest.model.architecture} spec has ${parameterCount(manifest.model)}`);
    }
  } catch (error) {
    model.dispose();
    throw error;
  }
  const warnings: string[] = [];
  const here = pipelineHash({ inputSize: manifest.model.inputSize, channels: manifest.model.channels, preprocessing: manifest.preprocessing });
  if (here !== manifest.pipeline.hash) {
    // libvips or our pipeline changed since the export: resampling may differ slightly from the training tensors.
    warnings.push(
      `this agent's preprocessing (pipeline version ${manifest.pipeline.preprocessVersion} -> ${PREPROCESS_VERSION}, libvips ${manifest.pipeline.vips} -> ${sharp.versions.vips}) ` +
        'differs from the one the model was exported with; predictions may differ slightly from the site\'s evaluation',
    );
  }
  return { dir: root, manifest, model, backend: info, warnings, dispose: () => model.dispose() };
}

export type FilePrediction =
  | { file: string; probabilities: Record<string, number>; predicted: string }
  | { file: string; error: { reason: string; message: string } };

/**
 * The model's class probabilities for each file (or the files under a folder, hidden ones skipped), in order.
 * Each file is read exactly as the site reads its training and evaluation data: DICOM through the site's reader,
 * PNG/JPEG through sharp, then the study's preprocessing. A file that cannot be used gets an error entry with the
 * reason the site's data loader would give; the others are still predicted.
 */
export async function predictFiles(exported: ExportedModel, paths: readonly string[]): Promise<FilePrediction[]> {
  const files = await expandPaths(paths);
  const results: FilePrediction[] = [];
  for (let start = 0; start < files.length; start += BATCH_SIZE) {
    const chunk = files.slice(start, start + BATCH_SIZE);
    const prepared = await mapWithConcurrency(chunk, DECODE_CONCURRENCY, (file) => prepareFile(exported.manifest, file));
    const usable = prepared.filter((p): p is Prepared & { pixels: Float32Array } => p.pixels !== undefined);
    const probabilities = usable.length > 0 ? await forward(exported, usable.map((p) => p.pixels)) : new Float32Array(0);
    const classes = exported.manifest.classNames;
    let row = 0;
    for (const item of prepared) {
      if (item.pixels === undefined) {
        results.push({ file: item.file, error: item.error ?? { reason: 'read-error', message: `${item.file}: could not be read` } });
        continue;
      }
      const values = Array.from(probabilities.subarray(row * classes.length, (row + 1) * classes.length));
      row++;
      const best = values.reduce((top, p, i) => (p > (values[top] ?? -Infinity) ? i : top), 0);
      results.push({ file: item.file, probabilities: Object.fromEntries(classes.map((name, i) => [name, values[i] ?? NaN])), predicted: classes[best] ?? '' });
    }
  }
  return results;
}

interface Prepared {
  file: string;
  pixels?: Float32Array;
  error?: { reason: string; message: string };
}

async function prepareFile(manifest: ExportManifest, file: string): Promise<Prepared> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { file, error: { reason: code === 'ENOENT' ? 'missing-file' : 'read-error', message: `${file}: ${code === 'ENOENT' ? 'no such file' : (error as Error).message}` } };
  }
  try {
    const image = await decodeImage(bytes, file);
    const pixels = await preprocessImage(image, { inputSize: manifest.model.inputSize, channels: manifest.model.channels, preprocessing: manifest.preprocessing });
    return { file, pixels };
  } catch (error) {
    if (error instanceof DicomRejection || error instanceof ImageRejection) return { file, error: { reason: error.reason, message: error.message } };
    return { file, error: { reason: 'read-error', message: `${file}: ${(error as Error).message}` } };
  }
}

/** One forward pass over a batch, the way the site's evaluation runs it (inference mode, NHWC float32). */
async function forward(exported: ExportedModel, images: Float32Array[]): Promise<Float32Array> {
  await initBackend(exported.backend.name);
  const { inputSize, channels } = exported.manifest.model;
  const size = inputSize * inputSize * channels;
  const pixels = new Float32Array(images.length * size);
  images.forEach((image, i) => pixels.set(image, i * size));
  const probs = tf.tidy(() => exported.model.apply(tf.tensor4d(pixels, [images.length, inputSize, inputSize, channels], 'float32'), { training: false }) as tf.Tensor2D);
  try {
    return (await probs.data()) as Float32Array;
  } finally {
    probs.dispose();
  }
}

/** Files as given, and a folder's files (recursively, sorted) in its place. */
async function expandPaths(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    const isDir = await stat(path).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (isDir) files.push(...(await listFiles(path)).sort().map((f) => join(path, f)));
    // Missing files are kept: they get their own error entry.
    else files.push(path);
  }
  return files;
}
