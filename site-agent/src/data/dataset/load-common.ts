import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { preprocessingSchema } from '@federa/shared';
import { z } from 'zod';
import { DicomRejection } from '../dicom/rejection.js';
import { pngMaskCandidates } from './mask-files.js';
import { sniffMaskObject, type MaskObjectKind } from '../masks/sniff.js';
import { isRasterImage, type ImageSource } from '../preprocess/preprocess.js';
import { sniffRasterFormat } from '../preprocess/raster.js';
import { ImageRejection } from '../preprocess/rejection.js';
import { decodeImage } from '../preprocess/source.js';
import { mapWithConcurrency } from './concurrency.js';
import { assignGroups } from './groups.js';
import { identityOf, type ImageIdentity } from './labels.js';
import type { DatasetRejectionReason, RejectedFile } from './load.js';

/** What the dataset loaders share: option checks, decoding, mask-file recognition, grouping and the tally. */

export const commonOptionsShape = {
  dir: z.string().min(1),
  inputSize: z.number().int().min(1).max(4096),
  channels: z.union([z.literal(1), z.literal(3)], { error: 'channels must be 1 or 3' }),
  preprocessing: preprocessingSchema.optional(),
  concurrency: z.number().int().min(1).max(256).optional(),
};

/** Validates a loader's options; invalid options are a programming or configuration error, so they throw. */
export function parseLoaderOptions<S extends z.ZodType>(schema: S, options: unknown, loader: string): z.output<S> {
  const parsed = schema.safeParse(options);
  if (parsed.success) return parsed.data;
  const detail = parsed.error.issues.map((i) => `${i.path.join('.') || 'options'}: ${i.message}`).join('; ');
  throw new RangeError(`${loader}: invalid options (${detail})`);
}

/** Twice the CPU count, at most 16: I/O and sharp overlap with decoding. */
export function defaultConcurrency(): number {
  return Math.min(16, availableParallelism() * 2);
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A decoder's or pipeline's refusal keeps its reason; anything else (a sharp failure) is a read error, never a crash. */
export function rejectionFromError(file: string, error: unknown): RejectedFile {
  if (error instanceof DicomRejection || error instanceof ImageRejection) return { file, reason: error.reason, message: error.message };
  return { file, reason: 'read-error', message: `${file}: ${describeError(error)}` };
}

export function rejection(file: string, reason: DatasetRejectionReason, message: string): RejectedFile {
  return { file, reason, message };
}

/** Runs `fn` over files with bounded concurrency, reporting each one done. */
export async function mapFiles<R>(
  files: readonly string[],
  concurrency: number,
  onProgress: ((done: number, total: number) => void) | undefined,
  fn: (file: string) => Promise<R>,
): Promise<R[]> {
  let done = 0;
  return mapWithConcurrency(files, concurrency, async (file) => {
    const result = await fn(file);
    done++;
    onProgress?.(done, files.length);
    return result;
  });
}

/** Decodes an image and reads what labels and the patient split key on. Throws DicomRejection / ImageRejection. */
export async function decodeWithIdentity(bytes: Uint8Array, file: string): Promise<{ image: ImageSource; identity: ImageIdentity }> {
  const image = await decodeImage(bytes, file);
  const identity: ImageIdentity = { ...identityOf(image), patientKey: isRasterImage(image) ? undefined : image.header.patientKey };
  return { image, identity };
}

/** Rows x columns of a decoded image (a DICOM frame or a raster after EXIF orientation). */
export function imageSize(image: ImageSource): { rows: number; columns: number } {
  return isRasterImage(image) ? { rows: image.height, columns: image.width } : { rows: image.header.rows, columns: image.header.columns };
}

/** Whether the bytes are a Segmentation or RT Structure Set; PNG and JPEG files are images without a look. */
export function maskObjectIn(bytes: Uint8Array, metaOnly = false): MaskObjectKind | undefined {
  return sniffRasterFormat(bytes) === undefined ? sniffMaskObject(bytes, { metaOnly }) : undefined;
}

/** Enough of a file for its Part 10 meta header, which is all maskObjectIn needs to recognise a mask object. */
export async function readHead(path: string, length = 4096): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const buffer = new Uint8Array(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** `<name>.mask.png` files that sit beside an image (see mask-files.ts): masks by name, before anything is read. */
export function pngMasksBesideImages(files: readonly string[]): Set<string> {
  return new Set([...pngMaskCandidates(files)].filter(([, images]) => images.length > 0).map(([mask]) => mask));
}

/** Patient groups of accepted images; an image with no SOP Instance UID stands for itself by its path. */
export function groupsOf(accepted: ReadonlyArray<{ file: string; identity: ImageIdentity }>): Uint32Array {
  return assignGroups(
    accepted.map(({ file, identity }) => ({
      patientKey: identity.patientKey,
      studyInstanceUid: identity.studyInstanceUid,
      imageKey: identity.sopInstanceUid !== undefined ? `sop:${identity.sopInstanceUid}` : `file:${file}`,
    })),
  );
}

/**
 * Keeps the first image of each SOP instance (a re-export or a copy would be trained on twice) and rejects the
 * later ones; `keyOf` returns undefined for images that are not checked.
 */
export function keepFirstInstance<T extends { file: string }>(items: readonly T[], keyOf: (item: T) => string | undefined, rejected: RejectedFile[]): T[] {
  const first = new Map<string, string>();
  const kept: T[] = [];
  for (const item of items) {
    const key = keyOf(item);
    const earlier = key === undefined ? undefined : first.get(key);
    if (earlier !== undefined) {
      rejected.push(rejection(item.file, 'duplicate-instance', `${item.file}: same SOP Instance UID as ${earlier}, which is used instead`));
      continue;
    }
    if (key !== undefined) first.set(key, item.file);
    kept.push(item);
  }
  return kept;
}

/** Concatenates per-image tensors of equal length. */
export function stack<T extends Float32Array | Uint8Array>(parts: readonly T[], length: number, make: (n: number) => T): T {
  const out = make(parts.length * length);
  parts.forEach((part, i) => out.set(part, i * length));
  return out;
}

/** Rejections by reason, each also logged at debug level (paths can carry patient names). */
export function tallyRejections(rejected: readonly RejectedFile[], log: { debug: (fields: object, message: string) => void }): Record<string, number> {
  const byReason: Record<string, number> = {};
  for (const r of rejected) {
    byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
    log.debug({ file: r.file, reason: r.reason }, r.message);
  }
  return byReason;
}
