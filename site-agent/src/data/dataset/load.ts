import { readdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { createLogger, DEFAULT_PREPROCESSING, preprocessingSchema, sha256Hex, type Preprocessing } from '@federa/shared';
import { z } from 'zod';
import { DicomRejection, type DicomRejectionReason } from '../dicom/rejection.js';
import { isRasterImage, pipelineHash, preprocessImage } from '../preprocess/preprocess.js';
import { ImageRejection, type ImageRejectionReason } from '../preprocess/rejection.js';
import { decodeImage } from '../preprocess/source.js';
import { mapWithConcurrency } from './concurrency.js';
import { assignGroups } from './groups.js';
import { DatasetLabels, identityOf, type DatasetLayout, type ImageIdentity } from './labels.js';
import { TensorCache, type TensorCacheStats } from './tensor-cache.js';

const log = createLogger('site-agent.data');

/**
 * Labelled images in NHWC order, float32 values (in [0, 1] unless the study z-scores): image i occupies
 * `images[i * height * width * channels, (i + 1) * height * width * channels)`. This is what training consumes.
 */
export interface LabeledImages {
  images: Float32Array;
  /** Class index per image, in [0, classes). */
  labels: Int32Array;
  count: number;
  height: number;
  width: number;
  channels: number;
  /**
   * Group per image (see assignGroups): images of one patient share a value, so a split can keep them together.
   * Absent for synthetic sets with no patients, where each image stands alone. Pseudonymous, but it stays at the site.
   */
  groups?: Uint32Array | undefined;
}

/** Labelled images that know their patient groups, which is what a train/validation split needs. */
export type GroupedImages = LabeledImages & { groups: Uint32Array };

/** Dataset-level reasons on top of the decoder's: label bookkeeping, the pipeline, duplicates and I/O. */
export type DatasetRejectionReason =
  | DicomRejectionReason
  | ImageRejectionReason
  | 'missing-label'
  | 'unknown-label'
  | 'missing-file'
  | 'duplicate-instance'
  | 'read-error';

export interface RejectedFile {
  /** Path relative to the dataset directory (POSIX separators), or `labels.csv:LINE` for a row no file matched. */
  file: string;
  reason: DatasetRejectionReason;
  message: string;
}

export interface LoadLabeledDatasetOptions {
  dir: string;
  /** Labels CSV keyed by file path, SOP Instance UID or Study Instance UID; without one, one folder per class. */
  labelsCsv?: string | undefined;
  /** Only these files (relative to `dir`) instead of everything under it: a PACS selection within its cache. */
  files?: readonly string[] | undefined;
  inputSize: number;
  /** Model input channels: 1 (grey) or 3 (RGB). */
  channels: 1 | 3;
  classNames: string[];
  /** The study's pipeline; defaults to the pipeline studies had before they could declare one. */
  preprocessing?: Preprocessing | undefined;
  /** Folder for preprocessed tensors (under the site's state folder); without it every load decodes. */
  cacheDir?: string | undefined;
  onProgress?: (done: number, total: number) => void;
  /** Files decoded at once; defaults to twice the CPU count (I/O and sharp overlap with decoding). */
  concurrency?: number;
}

export interface LoadedDataset {
  images: GroupedImages;
  rejected: RejectedFile[];
  /** Accepted images per class name (every class present, possibly 0). */
  classCounts: Record<string, number>;
  /** Accepted files in image order: files[i] is images.images[i]. */
  files: string[];
  /** Tensor cache use; all zero without a cache folder. */
  cache: TensorCacheStats;
}

const optionsSchema = z.object({
  dir: z.string().min(1),
  labelsCsv: z.string().min(1).optional(),
  inputSize: z.number().int().min(1).max(4096),
  channels: z.union([z.literal(1), z.literal(3)], { error: 'channels must be 1 or 3' }),
  classNames: z
    .array(z.string().min(1))
    .min(2, 'needs at least two classes')
    .refine((names) => new Set(names).size === names.length, 'class names must be unique'),
  preprocessing: preprocessingSchema.optional(),
  cacheDir: z.string().min(1).optional(),
  concurrency: z.number().int().min(1).max(256).optional(),
});

type Outcome =
  | { ok: true; file: string; label: number; pixels: Float32Array; identity: ImageIdentity }
  | { ok: false; rejection: RejectedFile };

/** Patient groups of the accepted images; an image with no SOP Instance UID stands for itself by its path. */
function groupsOf(accepted: ReadonlyArray<{ file: string; identity: ImageIdentity }>): Uint32Array {
  return assignGroups(
    accepted.map(({ file, identity }) => ({
      patientKey: identity.patientKey,
      studyInstanceUid: identity.studyInstanceUid,
      imageKey: identity.sopInstanceUid !== undefined ? `sop:${identity.sopInstanceUid}` : `file:${file}`,
    })),
  );
}

/** Regular files below `root` as POSIX paths relative to it; hidden files and folders are skipped. */
export async function listFiles(root: string, folder = root): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true });
  const found: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(folder, entry.name);
    if (entry.isDirectory()) found.push(...(await listFiles(root, full)));
    else if (entry.isFile() || (entry.isSymbolicLink() && (await stat(full)).isFile())) {
      found.push(relative(root, full).split(sep).join('/'));
    }
  }
  return found;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Loads every image under `dir` that has a label (from the CSV, or its class folder), preprocessed with the
 * study's pipeline to inputSize x inputSize x channels. Files that cannot be used (corrupt, unsupported,
 * unlabelled, unknown class, missing, a window they cannot take, a repeated SOP instance) are listed in
 * `rejected` with a reason; only a malformed labels CSV, invalid options or an unreadable directory throw.
 */
export async function loadLabeledDataset(options: LoadLabeledDatasetOptions): Promise<LoadedDataset> {
  const parsedOptions = optionsSchema.safeParse(options);
  if (!parsedOptions.success) {
    const detail = parsedOptions.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ');
    throw new RangeError(`loadLabeledDataset: invalid options (${detail})`);
  }
  const { inputSize, channels, classNames } = parsedOptions.data;
  const preprocessing = parsedOptions.data.preprocessing ?? DEFAULT_PREPROCESSING;
  const dir = resolve(options.dir);
  const layout: DatasetLayout = options.labelsCsv ? { kind: 'labels-csv', path: options.labelsCsv } : { kind: 'folders' };
  const labels = await DatasetLabels.open(dir, layout);
  const pipeline = { inputSize, channels, preprocessing };
  const tensorLength = inputSize * inputSize * channels;
  const cache = options.cacheDir ? new TensorCache(resolve(options.cacheDir), pipelineHash(pipeline), tensorLength) : undefined;

  const classIndex = new Map(classNames.map((name, i) => [name, i]));
  const onDisk = new Set((options.files ? [...options.files] : await listFiles(dir)).filter((f) => f !== labels.csvInsideDir));
  const candidates = [...new Set([...onDisk, ...labels.listedFiles()])].sort();

  let done = 0;
  const total = candidates.length;
  const concurrency = parsedOptions.data.concurrency ?? Math.min(16, availableParallelism() * 2);

  const loadOne = async (file: string): Promise<Outcome> => {
    const reject = (reason: DatasetRejectionReason, message: string): Outcome => ({ ok: false, rejection: { file, reason, message } });
    const classOf = (label: string): number | Outcome => {
      const index = classIndex.get(label);
      if (index !== undefined) return index;
      const what = labels.keyedBy === 'folder' ? `folder "${label}"` : `label "${label}"`;
      return reject('unknown-label', `${file}: ${what} is not one of ${classNames.join(', ')}`);
    };
    // Path-keyed labels are settled before reading, so unlabelled files cost nothing.
    let label: number | undefined;
    const byPath = labels.labelForPath(file);
    if (byPath !== undefined) {
      if (!byPath.ok) return reject('missing-label', byPath.message);
      const index = classOf(byPath.label);
      if (typeof index !== 'number') return index;
      label = index;
    }
    if (!onDisk.has(file)) return reject('missing-file', `${file}: listed in ${options.labelsCsv ?? 'the labels'} but not found under ${options.dir}`);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(join(dir, file));
    } catch (error) {
      return reject('read-error', `${file}: ${describe(error)}`);
    }
    // UID-keyed labels need the file's header (or the identity cached with its tensor).
    const labelByIdentity = (identity: ImageIdentity): number | Outcome => {
      const byUid = labels.labelForIdentity(file, identity);
      return byUid.ok ? classOf(byUid.label) : reject('missing-label', byUid.message);
    };
    try {
      const key = cache ? sha256Hex(bytes) : undefined;
      const cached = key !== undefined ? await cache?.read(key) : undefined;
      if (cached) {
        const index = labels.needsIdentity ? labelByIdentity(cached.identity) : label;
        if (typeof index !== 'number') return index ?? reject('missing-label', `${file}: no label`);
        return { ok: true, file, label: index, pixels: cached.tensor, identity: cached.identity };
      }
      const image = await decodeImage(bytes, file);
      const uids = identityOf(image);
      const index = labels.needsIdentity ? labelByIdentity(uids) : label;
      // Checked before preprocessing, so an unlabelled file costs its decode and no more.
      if (typeof index !== 'number') return index ?? reject('missing-label', `${file}: no label`);
      const identity: ImageIdentity = { ...uids, patientKey: isRasterImage(image) ? undefined : image.header.patientKey };
      const pixels = await preprocessImage(image, pipeline);
      if (key !== undefined) await cache?.write(key, { tensor: pixels, identity });
      return { ok: true, file, label: index, pixels, identity };
    } catch (error) {
      if (error instanceof DicomRejection || error instanceof ImageRejection) return reject(error.reason, error.message);
      // Anything else (a sharp failure on a pathological image) must not abort the whole site's load.
      return reject('read-error', `${file}: ${describe(error)}`);
    }
  };

  const outcomes = await mapWithConcurrency(candidates, concurrency, async (file) => {
    const outcome = await loadOne(file);
    done++;
    options.onProgress?.(done, total);
    return outcome;
  });

  const accepted: Array<Extract<Outcome, { ok: true }>> = [];
  const rejected: RejectedFile[] = [];
  // The same SOP instance twice (a re-export, a copy) would be trained on twice: the first path wins.
  const firstWithSop = new Map<string, string>();
  for (const outcome of outcomes) {
    if (!outcome.ok) {
      rejected.push(outcome.rejection);
      continue;
    }
    const sop = labels.keyedBy === 'sop_instance_uid' ? outcome.identity.sopInstanceUid : undefined;
    const first = sop !== undefined ? firstWithSop.get(sop) : undefined;
    if (first !== undefined) {
      rejected.push({ file: outcome.file, reason: 'duplicate-instance', message: `${outcome.file}: same SOP Instance UID as ${first}, which is used instead` });
      continue;
    }
    if (sop !== undefined) firstWithSop.set(sop, outcome.file);
    accepted.push(outcome);
  }
  for (const row of labels.unmatchedUidRows()) rejected.push({ file: row.where, reason: 'missing-file', message: row.message });

  const pixelsPerImage = tensorLength;
  const images = new Float32Array(accepted.length * pixelsPerImage);
  const labelsOut = new Int32Array(accepted.length);
  const classCounts: Record<string, number> = Object.fromEntries(classNames.map((n) => [n, 0]));
  accepted.forEach((item, i) => {
    images.set(item.pixels, i * pixelsPerImage);
    labelsOut[i] = item.label;
    const name = classNames[item.label] as string;
    classCounts[name] = (classCounts[name] ?? 0) + 1;
  });

  const rejectedByReason: Record<string, number> = {};
  for (const r of rejected) {
    rejectedByReason[r.reason] = (rejectedByReason[r.reason] ?? 0) + 1;
    log.debug({ file: r.file, reason: r.reason }, r.message);
  }
  const cacheStats = cache?.stats ?? { hits: 0, misses: 0, corrupt: 0, writeErrors: 0 };
  // Operators need to notice skipped data without reading per-file debug lines, hence warn with a tally.
  const level = rejected.length > 0 ? 'warn' : 'info';
  log[level]({ dir: options.dir, accepted: accepted.length, rejected: rejected.length, rejectedByReason, classCounts, cache: cacheStats }, 'dataset loaded');

  return {
    images: { images, labels: labelsOut, count: accepted.length, height: inputSize, width: inputSize, channels, groups: groupsOf(accepted) },
    rejected,
    classCounts,
    files: accepted.map((a) => a.file),
    cache: { ...cacheStats },
  };
}
