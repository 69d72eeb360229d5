import { readdir, readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { createLogger } from '@federa/shared';
import { z } from 'zod';
import { decodeDicom } from '../dicom/reader.js';
import { DicomRejection, type DicomRejectionReason } from '../dicom/rejection.js';
import { preprocessFrame } from '../preprocess/preprocess.js';
import { parseLabelsCsv } from './labels-csv.js';
import { mapWithConcurrency } from './concurrency.js';

const log = createLogger('site-agent.data');

/**
 * Labelled images in NHWC order, float32 values roughly in [0, 1]: image i occupies
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
}

/** Dataset-level reasons on top of the DICOM ones: label bookkeeping and I/O. */
export type DatasetRejectionReason = DicomRejectionReason | 'missing-label' | 'unknown-label' | 'missing-file' | 'read-error';

export interface RejectedFile {
  /** Path relative to the dataset directory (POSIX separators). */
  file: string;
  reason: DatasetRejectionReason;
  message: string;
}

export interface LoadLabeledDatasetOptions {
  dir: string;
  labelsCsv: string;
  inputSize: number;
  channels: 1;
  classNames: string[];
  onProgress?: (done: number, total: number) => void;
  /** Files decoded at once; defaults to twice the CPU count (I/O and sharp overlap with decoding). */
  concurrency?: number;
}

export interface LoadedDataset {
  images: LabeledImages;
  rejected: RejectedFile[];
  /** Accepted images per class name (every class present, possibly 0). */
  classCounts: Record<string, number>;
  /** Accepted files in image order: files[i] is images.images[i]. */
  files: string[];
}

const optionsSchema = z.object({
  dir: z.string().min(1),
  labelsCsv: z.string().min(1),
  inputSize: z.number().int().min(1).max(4096),
  channels: z.literal(1),
  classNames: z
    .array(z.string().min(1))
    .min(2, 'needs at least two classes')
    .refine((names) => new Set(names).size === names.length, 'class names must be unique'),
  concurrency: z.number().int().min(1).max(256).optional(),
});

type Outcome = { ok: true; file: string; label: number; pixels: Float32Array } | { ok: false; rejection: RejectedFile };

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
 * Loads every DICOM file under `dir` that has a label in `labelsCsv`, preprocessed to inputSize x inputSize x 1.
 * Files that cannot be used (corrupt, compressed, unlabelled, unknown class, missing) are listed in `rejected`
 * with a reason; only a malformed labels CSV or an unreadable directory throws.
 */
export async function loadLabeledDataset(options: LoadLabeledDatasetOptions): Promise<LoadedDataset> {
  const parsedOptions = optionsSchema.safeParse(options);
  if (!parsedOptions.success) {
    const detail = parsedOptions.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ');
    throw new RangeError(`loadLabeledDataset: invalid options (${detail})`);
  }
  const { inputSize, classNames } = parsedOptions.data;
  const dir = resolve(options.dir);
  const csvPath = resolve(options.labelsCsv);
  const rows = parseLabelsCsv(await readFile(csvPath, 'utf8'), options.labelsCsv);

  const labelByFile = new Map(rows.map((r) => [r.file, r.label]));
  const classIndex = new Map(classNames.map((name, i) => [name, i]));
  const csvInsideDir = relative(dir, csvPath).split(sep).join('/');
  const onDisk = new Set((await listFiles(dir)).filter((f) => f !== csvInsideDir));
  const candidates = [...new Set([...onDisk, ...labelByFile.keys()])].sort();

  let done = 0;
  const total = candidates.length;
  const concurrency = parsedOptions.data.concurrency ?? Math.min(16, availableParallelism() * 2);

  const loadOne = async (file: string): Promise<Outcome> => {
    const reject = (reason: DatasetRejectionReason, message: string): Outcome => ({ ok: false, rejection: { file, reason, message } });
    const label = labelByFile.get(file);
    if (label === undefined) return reject('missing-label', `${file}: no row in ${options.labelsCsv}`);
    const index = classIndex.get(label);
    if (index === undefined) return reject('unknown-label', `${file}: label "${label}" is not one of ${classNames.join(', ')}`);
    if (!onDisk.has(file)) return reject('missing-file', `${file}: listed in ${options.labelsCsv} but not found under ${options.dir}`);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(join(dir, file));
    } catch (error) {
      return reject('read-error', `${file}: ${describe(error)}`);
    }
    try {
      // Multi-frame files contribute their first frame; the study defines one image per labelled file.
      const image = decodeDicom(bytes, { file });
      return { ok: true, file, label: index, pixels: await preprocessFrame(image, { inputSize }) };
    } catch (error) {
      if (error instanceof DicomRejection) return reject(error.reason, error.message);
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

  const accepted = outcomes.filter((o): o is Extract<Outcome, { ok: true }> => o.ok);
  const rejected = outcomes.flatMap((o) => (o.ok ? [] : [o.rejection]));
  const pixelsPerImage = inputSize * inputSize;
  const images = new Float32Array(accepted.length * pixelsPerImage);
  const labels = new Int32Array(accepted.length);
  const classCounts: Record<string, number> = Object.fromEntries(classNames.map((n) => [n, 0]));
  accepted.forEach((item, i) => {
    images.set(item.pixels, i * pixelsPerImage);
    labels[i] = item.label;
    const name = classNames[item.label] as string;
    classCounts[name] = (classCounts[name] ?? 0) + 1;
  });

  const rejectedByReason: Record<string, number> = {};
  for (const r of rejected) {
    rejectedByReason[r.reason] = (rejectedByReason[r.reason] ?? 0) + 1;
    log.debug({ file: r.file, reason: r.reason }, r.message);
  }
  // Operators need to notice skipped data without reading per-file debug lines, hence warn with a tally.
  const level = rejected.length > 0 ? 'warn' : 'info';
  log[level]({ dir: options.dir, accepted: accepted.length, rejected: rejected.length, rejectedByReason, classCounts }, 'dataset loaded');

  return {
    images: { images, labels, count: accepted.length, height: inputSize, width: inputSize, channels: 1 },
    rejected,
    classCounts,
    files: accepted.map((a) => a.file),
  };
}
