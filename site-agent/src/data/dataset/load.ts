import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { createLogger, DEFAULT_PREPROCESSING, sha256Hex, type Preprocessing } from '@federa/shared';
import { z } from 'zod';
import type { DicomRejectionReason } from '../dicom/rejection.js';
import { pipelineHash, preprocessImage } from '../preprocess/preprocess.js';
import type { ImageRejectionReason } from '../preprocess/rejection.js';
import { DatasetLabels, type DatasetLayout, type ImageIdentity } from './labels.js';
import {
  commonOptionsShape,
  decodeWithIdentity,
  defaultConcurrency,
  describeError,
  groupsOf,
  keepFirstInstance,
  mapFiles,
  maskObjectIn,
  parseLoaderOptions,
  pngMasksBesideImages,
  readHead,
  rejectionFromError,
  stack,
  tallyRejections,
} from './load-common.js';
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
  /**
   * Per-pixel class index, [count, height, width] row-major on the preprocessed grid (0 background, 1.. the
   * segments in mask order); present only for segmentation data.
   */
  masks?: Uint8Array | undefined;
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
  | 'read-error'
  /** Segmentation: an image without a mask (when unmasked images are rejected). */
  | 'missing-mask'
  /** Segmentation: a mask that cannot be used for its image(s): wrong size, unknown segment, unreadable mask. */
  | 'mask-mismatch'
  /** Segmentation: a mask file, or some of its masks, for images that are not in the dataset. */
  | 'missing-image';

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
  /**
   * Mask files found among the data and left out without a rejection, since they are not images: DICOM SEG and
   * RT Structure Sets (by SOP Class) and `<name>.mask.png` beside an image (see mask-files.ts).
   */
  setAside: string[];
}

/** The labelled loaders' options (this one's, and loadRegionDataset's on top). */
export const labeledOptionsSchema = z.object({
  ...commonOptionsShape,
  labelsCsv: z.string().min(1).optional(),
  classNames: z
    .array(z.string().min(1))
    .min(2, 'needs at least two classes')
    .refine((names) => new Set(names).size === names.length, 'class names must be unique'),
  cacheDir: z.string().min(1).optional(),
});

type Outcome =
  | { ok: true; file: string; label: number; pixels: Float32Array; identity: ImageIdentity }
  | { ok: false; rejection: RejectedFile }
  | { ok: 'set-aside'; file: string };

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

/**
 * Loads every image under `dir` that has a label (from the CSV, or its class folder), preprocessed with the
 * study's pipeline to inputSize x inputSize x channels. Files that cannot be used (corrupt, unsupported,
 * unlabelled, unknown class, missing, a window they cannot take, a repeated SOP instance) are listed in
 * `rejected` with a reason; mask files (segmentation objects, PNG masks beside their image) are not images and
 * are listed in `setAside` instead. Only a malformed labels CSV, invalid options or an unreadable directory throw.
 */
export async function loadLabeledDataset(options: LoadLabeledDatasetOptions): Promise<LoadedDataset> {
  const parsedOptions = parseLoaderOptions(labeledOptionsSchema, options, 'loadLabeledDataset');
  const { inputSize, channels, classNames } = parsedOptions;
  const preprocessing = parsedOptions.preprocessing ?? DEFAULT_PREPROCESSING;
  const dir = resolve(options.dir);
  const layout: DatasetLayout = options.labelsCsv ? { kind: 'labels-csv', path: options.labelsCsv } : { kind: 'folders' };
  const labels = await DatasetLabels.open(dir, layout);
  const pipeline = { inputSize, channels, preprocessing };
  const tensorLength = inputSize * inputSize * channels;
  const cache = options.cacheDir ? new TensorCache(resolve(options.cacheDir), pipelineHash(pipeline), tensorLength) : undefined;

  const classIndex = new Map(classNames.map((name, i) => [name, i]));
  const onDisk = new Set((options.files ? [...options.files] : await listFiles(dir)).filter((f) => f !== labels.csvInsideDir));
  const candidates = [...new Set([...onDisk, ...labels.listedFiles()])].sort();
  const pngMasks = pngMasksBesideImages([...onDisk]);

  const loadOne = async (file: string): Promise<Outcome> => {
    const reject = (reason: DatasetRejectionReason, message: string): Outcome => ({ ok: false, rejection: { file, reason, message } });
    const setAside: Outcome = { ok: 'set-aside', file };
    if (pngMasks.has(file)) return setAside;
    const classOf = (label: string): number | Outcome => {
      const index = classIndex.get(label);
      if (index !== undefined) return index;
      const what = labels.keyedBy === 'folder' ? `folder "${label}"` : `label "${label}"`;
      return reject('unknown-label', `${file}: ${what} is not one of ${classNames.join(', ')}`);
    };
    // Path-keyed labels are settled before reading, so unlabelled files cost no decode.
    let label: number | undefined;
    let unlabelled: Outcome | undefined;
    const byPath = labels.labelForPath(file);
    if (byPath !== undefined) {
      const index = byPath.ok ? classOf(byPath.label) : reject('missing-label', byPath.message);
      if (typeof index === 'number') label = index;
      else unlabelled = index;
    }
    if (!onDisk.has(file)) return unlabelled ?? reject('missing-file', `${file}: listed in ${options.labelsCsv ?? 'the labels'} but not found under ${options.dir}`);
    if (unlabelled !== undefined) {
      // Masks stored beside the images (a SEG per image, say) have no label and need none: the meta header tells.
      const head = await readHead(join(dir, file)).catch(() => undefined);
      return head !== undefined && maskObjectIn(head, true) !== undefined ? setAside : unlabelled;
    }
    let bytes: Uint8Array;
    try {
      bytes = await readFile(join(dir, file));
    } catch (error) {
      return reject('read-error', `${file}: ${describeError(error)}`);
    }
    if (maskObjectIn(bytes) !== undefined) return setAside;
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
      const { image, identity } = await decodeWithIdentity(bytes, file);
      const index = labels.needsIdentity ? labelByIdentity(identity) : label;
      // Checked before preprocessing, so an unlabelled file costs its decode and no more.
      if (typeof index !== 'number') return index ?? reject('missing-label', `${file}: no label`);
      const pixels = await preprocessImage(image, pipeline);
      if (key !== undefined) await cache?.write(key, { tensor: pixels, identity });
      return { ok: true, file, label: index, pixels, identity };
    } catch (error) {
      return { ok: false, rejection: rejectionFromError(file, error) };
    }
  };

  const outcomes = await mapFiles(candidates, parsedOptions.concurrency ?? defaultConcurrency(), options.onProgress, loadOne);

  const rejected: RejectedFile[] = [];
  const setAside: string[] = [];
  const decoded: Array<Extract<Outcome, { ok: true }>> = [];
  for (const outcome of outcomes) {
    if (outcome.ok === 'set-aside') setAside.push(outcome.file);
    else if (outcome.ok) decoded.push(outcome);
    else rejected.push(outcome.rejection);
  }
  // The same SOP instance twice (a re-export, a copy) would be trained on twice: the first path wins.
  const accepted = keepFirstInstance(decoded, (o) => (labels.keyedBy === 'sop_instance_uid' ? o.identity.sopInstanceUid : undefined), rejected);
  for (const row of labels.unmatchedUidRows()) rejected.push({ file: row.where, reason: 'missing-file', message: row.message });

  const classCounts: Record<string, number> = Object.fromEntries(classNames.map((n) => [n, 0]));
  for (const item of accepted) {
    const name = classNames[item.label] as string;
    classCounts[name] = (classCounts[name] ?? 0) + 1;
  }
  const images = stack(
    accepted.map((a) => a.pixels),
    tensorLength,
    (n) => new Float32Array(n),
  );

  const rejectedByReason = tallyRejections(rejected, log);
  const cacheStats = cache?.stats ?? { hits: 0, misses: 0, corrupt: 0, writeErrors: 0 };
  // Operators need to notice skipped data without reading per-file debug lines, hence warn with a tally.
  const level = rejected.length > 0 ? 'warn' : 'info';
  log[level]({ dir: options.dir, accepted: accepted.length, rejected: rejected.length, rejectedByReason, setAside: setAside.length, classCounts, cache: cacheStats }, 'dataset loaded');

  return {
    images: { images, labels: Int32Array.from(accepted, (a) => a.label), count: accepted.length, height: inputSize, width: inputSize, channels, groups: groupsOf(accepted) },
    rejected,
    classCounts,
    files: accepted.map((a) => a.file),
    cache: { ...cacheStats },
    setAside,
  };
}
