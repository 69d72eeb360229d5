import { mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import {
  architectureTask,
  createLogger,
  float32ToBytes,
  isLinearArchitecture,
  parameterCount,
  replaceFile,
  SECRET_FILE_MODE,
  sha256Hex,
  WEIGHTS_LAYOUT_VERSION,
} from '@federa/shared';
import { AGENT_VERSION } from '../agent/index.js';
import { pipelineHash, PREPROCESS_VERSION } from '../data/index.js';
import { buildModel, initBackend } from '../train/index.js';
import { EXPORT_FORMAT_VERSION, EXPORT_MANIFEST_FILE, MODEL_JSON_FILE, type ExportManifest } from './manifest.js';
import { ModelExportError, readSiteModel } from './site-models.js';
import { saveLayersModel } from './tfjs-files.js';

const log = createLogger('site-agent.model-export');

export interface ExportOptions {
  stateDir: string;
  siteId: string;
  studyId: string;
  round: number | 'latest';
  outDir: string;
  /** Replace an earlier export in `outDir`; without it a folder with files in it is refused. */
  force?: boolean;
}

export interface ExportResult {
  outDir: string;
  manifest: ExportManifest;
  /** Every file written, relative to outDir. */
  files: string[];
}

/** Matches what an export writes, so --force removes an earlier export's shards (there may have been more). */
const EXPORT_FILE = /^(model\.json|federa-model\.json|group\d+-shard\d+of\d+\.bin)$/;

/**
 * Writes the global model of a round of a study this site took part in, as the site decrypted it, as a
 * TensorFlow.js LayersModel (model.json + shards) with `federa-model.json` beside it. The model is built from the
 * spec in the study definition with the shared builders and the decrypted weights, so it is exactly the model the
 * site evaluates. Files are owner-only like the site's own copy: the hospital decides who else gets them.
 */
export async function exportGlobalModel(options: ExportOptions): Promise<ExportResult> {
  const site = await readSiteModel(options.stateDir, options.studyId, options.round);
  const { definition } = site;
  const spec = definition.model;
  // The manifest and predict speak of one class-probability vector per image (output 'softmax' over classNames).
  if (architectureTask(spec.architecture) !== 'classification') {
    throw new ModelExportError(`study ${site.studyId} trains a ${spec.architecture} segmentation model; exporting segmentation models is not supported yet`);
  }
  // The export is a TensorFlow.js graph of the pixels; a linear model's input is features the site computes itself.
  if (isLinearArchitecture(spec.architecture)) {
    throw new ModelExportError(
      `study ${site.studyId} trains a ${spec.architecture} model on hand-crafted image features, which is not a TensorFlow.js network; ` +
        'exporting linear models is not supported yet (the site\'s own evaluation and its decrypted weights in the state folder still hold the model)',
    );
  }
  const expected = parameterCount(spec);
  if (site.weights.length !== expected) {
    throw new ModelExportError(
      `${site.path} holds ${site.weights.length} weights but the ${spec.architecture} model of study ${site.studyId}'s definition has ${expected}: ` +
        'the stored definition is not the one this round was trained under (was the study redefined?)',
    );
  }
  const outDir = resolve(options.outDir);
  await prepareOutDir(outDir, options.force ?? false);

  await initBackend();
  const model = buildModel(spec, site.weights);
  let saved: Awaited<ReturnType<typeof saveLayersModel>>;
  try {
    saved = await saveLayersModel(model, outDir, SECRET_FILE_MODE);
  } finally {
    model.dispose();
  }
  const weightsSha256 = sha256Hex(float32ToBytes(site.weights));
  // The shards must be the decrypted vector byte for byte (same order, same values); anything else is a bug here.
  if (saved.weightsSha256 !== weightsSha256) {
    throw new Error(`the saved weight shards (sha256 ${saved.weightsSha256}) are not the site's global model (sha256 ${weightsSha256})`);
  }
  const shape = { inputSize: spec.inputSize, channels: spec.channels, preprocessing: definition.preprocessing };
  const manifest: ExportManifest = {
    format: 'federa-model',
    version: EXPORT_FORMAT_VERSION,
    studyId: site.studyId,
    studyName: definition.name,
    studyHash: site.studyHash,
    round: site.round,
    model: spec,
    classNames: definition.classNames,
    preprocessing: definition.preprocessing,
    input: { layout: 'NHWC', dtype: 'float32', shape: [spec.inputSize, spec.inputSize, spec.channels] },
    output: 'softmax',
    weights: { sha256: weightsSha256, parameters: expected, layoutVersion: WEIGHTS_LAYOUT_VERSION },
    files: { modelJson: MODEL_JSON_FILE, shards: saved.shards },
    pipeline: { preprocessVersion: PREPROCESS_VERSION, vips: sharp.versions.vips, hash: pipelineHash(shape) },
    exportedAt: new Date().toISOString(),
    exportedBy: { siteId: options.siteId, agentVersion: AGENT_VERSION },
  };
  // Written last: a folder with federa-model.json in it holds a complete export.
  await replaceFile(join(outDir, EXPORT_MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, SECRET_FILE_MODE);
  log.info({ studyId: site.studyId, round: site.round, outDir, weightsSha256 }, 'global model exported');
  return { outDir, manifest, files: [MODEL_JSON_FILE, ...saved.shards.map((s) => s.path), EXPORT_MANIFEST_FILE] };
}

async function prepareOutDir(outDir: string, force: boolean): Promise<void> {
  await mkdir(outDir, { recursive: true, mode: 0o700 });
  const present = (await readdir(outDir)).filter((name) => !name.startsWith('.'));
  if (present.length === 0) return;
  const foreign = present.filter((name) => !EXPORT_FILE.test(name));
  if (!force || foreign.length > 0) {
    throw new ModelExportError(
      foreign.length > 0
        ? `${outDir} already holds other files (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''}); export into a new or empty folder`
        : `${outDir} already holds an export; give --force to replace it, or export into a new folder`,
    );
  }
  // The manifest goes first, so an interrupted replacement never looks like a complete export.
  await rm(join(outDir, EXPORT_MANIFEST_FILE), { force: true });
  for (const name of present) await rm(join(outDir, name), { force: true });
}
