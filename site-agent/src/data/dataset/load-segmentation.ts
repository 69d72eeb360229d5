import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createLogger, DEFAULT_PREPROCESSING, type Preprocessing } from '@federa/shared';
import { z } from 'zod';
import { readImageGeometry } from '../masks/geometry.js';
import { matchMasks } from '../masks/match.js';
import type { MaskObjectKind } from '../masks/sniff.js';
import type { ImageGeometry, MaskFile } from '../masks/types.js';
import { preprocessMask } from '../preprocess/mask.js';
import { isRasterImage, preprocessImage } from '../preprocess/preprocess.js';
import { mapWithConcurrency } from './concurrency.js';
import type { ImageIdentity } from './labels.js';
import {
  commonOptionsShape,
  decodeWithIdentity,
  defaultConcurrency,
  describeError,
  groupsOf,
  imageSize,
  keepFirstInstance,
  mapFiles,
  maskObjectIn,
  parseLoaderOptions,
  rejection,
  rejectionFromError,
  stack,
  tallyRejections,
} from './load-common.js';
import { listFiles, type GroupedImages, type RejectedFile } from './load.js';
import { isPngMaskName, PNG_MASK_SUFFIX, pngMaskCandidates } from './mask-files.js';
import { readStudyMask, segmentKey, studyClasses, type MaskReading } from './segmentation-masks.js';

const log = createLogger('site-agent.data');

/** Image-level labels of segmentation data: 0 when the (preprocessed) mask is all background, else 1. */
export const SEGMENTATION_IMAGE_CLASSES = ['background', 'foreground'] as const;

export type SegmentedImages = GroupedImages & { masks: Uint8Array };

export interface LoadSegmentationDatasetOptions {
  dir: string;
  /** Only these files (relative to `dir`) instead of everything under it. */
  files?: readonly string[] | undefined;
  /** Files under `dir` (relative to it) that are neither images nor masks, e.g. a labels CSV kept there. */
  exclude?: readonly string[] | undefined;
  inputSize: number;
  channels: 1 | 3;
  /** The study's segments in class order: class i + 1 is segments[i], 0 is background. Masks' segments map here by label. */
  segments: string[];
  preprocessing?: Preprocessing | undefined;
  /** An image no mask covers: 'reject' (default, reason 'missing-mask') or 'background' (an all-background mask). */
  unmasked?: 'background' | 'reject' | undefined;
  /** 'all' (default): every segment in a mask file must be one of `segments`; 'named': others are left out. */
  segmentsRead?: 'all' | 'named' | undefined;
  /** With segmentsRead 'named' and one segment: the PNG mask value that marks it (default: any non-zero value). */
  pngValue?: number | undefined;
  /** 'keep' (default), or 'reject' (reason 'missing-mask') an image whose preprocessed mask is all background. */
  emptyMasks?: 'keep' | 'reject' | undefined;
  /**
   * Classes that do not come from the mask (a classification study whose model looks inside a structure): `of`
   * gives an image's class index, or its rejection, before its mask is looked for. Without it, an image is
   * class 1 (foreground) where its mask has any segment, else 0 (SEGMENTATION_IMAGE_CLASSES).
   */
  imageClasses?: { readonly names: readonly string[]; readonly of: (file: string, identity: ImageIdentity) => number | RejectedFile } | undefined;
  /** Files read so far (images and mask files together) out of all candidates. */
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
}

export interface LoadedSegmentationDataset {
  /** Images with `masks` [count, height, width] and `labels` 1 where the mask has foreground, else 0. */
  images: SegmentedImages;
  rejected: RejectedFile[];
  /** Accepted images per image-level class (SEGMENTATION_IMAGE_CLASSES, or imageClasses' names). */
  classCounts: Record<string, number>;
  /** Accepted image files in image order. */
  files: string[];
  /** The mask file each image's mask came from, in image order; undefined where `unmasked: 'background'` filled it. */
  maskFiles: Array<string | undefined>;
  segments: string[];
  /** Pixels per class over all masks on the preprocessed grid: [background, segments[0], ...]. */
  pixelCounts: number[];
}

const optionsSchema = z.object({
  ...commonOptionsShape,
  segments: z
    .array(z.string().trim().min(1))
    .min(1, 'needs at least one segment')
    .max(254, 'at most 254 segments fit an 8-bit mask beside background')
    .refine((names) => new Set(names.map(segmentKey)).size === names.length, 'segment names must be unique (compared case-insensitively)'),
  unmasked: z.enum(['background', 'reject']).optional(),
  exclude: z.array(z.string().min(1)).optional(),
  segmentsRead: z.enum(['all', 'named']).optional(),
  pngValue: z.number().int().min(1).max(255).optional(),
  emptyMasks: z.enum(['keep', 'reject']).optional(),
});

interface DecodedImage {
  readonly file: string;
  readonly identity: ImageIdentity;
  readonly rows: number;
  readonly columns: number;
  readonly dicom: boolean;
  readonly pixels: Float32Array;
}

type Scanned =
  | { kind: 'image'; image: DecodedImage }
  | { kind: 'mask-object'; file: string; object: MaskObjectKind; bytes: Uint8Array }
  | { kind: 'png-mask'; file: string }
  | { kind: 'rejected'; rejection: RejectedFile };

/** Where the SOP instance and its key for PNG masks meet: PNG masks are keyed by their image's path. */
const fileKey = (file: string): string => `file:${file}`;

/**
 * Loads a segmentation dataset: every image under `dir` with its mask, both through the study's spatial
 * preprocessing so mask pixel (y, x) labels image pixel (y, x). Masks come from DICOM SEG and RT Structure Sets
 * anywhere under `dir` (matched to images by SOP Instance UID; structure sets rasterised on the image grid) and
 * from `<name>.mask.png` beside its image. Bad images, bad or ambiguous masks, images without a mask (unless
 * `unmasked: 'background'`) and masks without an image are listed in `rejected`; only invalid options or an
 * unreadable directory throw. There is no tensor cache yet: every load decodes.
 */
export async function loadSegmentationDataset(options: LoadSegmentationDatasetOptions): Promise<LoadedSegmentationDataset> {
  const parsed = parseLoaderOptions(optionsSchema, options, 'loadSegmentationDataset');
  const { inputSize, channels, segments } = parsed;
  const preprocessing = parsed.preprocessing ?? DEFAULT_PREPROCESSING;
  const unmasked = parsed.unmasked ?? 'reject';
  const dir = resolve(options.dir);
  const pipeline = { inputSize, channels, preprocessing };
  const excluded = new Set(parsed.exclude ?? []);
  const candidates = [...new Set(options.files ?? (await listFiles(dir)))].filter((f) => !excluded.has(f)).sort();
  const pngMasks = pngMaskCandidates(candidates);
  const concurrency = parsed.concurrency ?? defaultConcurrency();

  const scanOne = async (file: string): Promise<Scanned> => {
    if (isPngMaskName(file)) return { kind: 'png-mask', file };
    let bytes: Uint8Array;
    try {
      bytes = await readFile(join(dir, file));
    } catch (error) {
      return { kind: 'rejected', rejection: rejection(file, 'read-error', `${file}: ${describeError(error)}`) };
    }
    const object = maskObjectIn(bytes);
    if (object !== undefined) return { kind: 'mask-object', file, object, bytes };
    try {
      const { image, identity } = await decodeWithIdentity(bytes, file);
      const pixels = await preprocessImage(image, pipeline);
      return { kind: 'image', image: { file, identity, ...imageSize(image), dicom: !isRasterImage(image), pixels } };
    } catch (error) {
      return { kind: 'rejected', rejection: rejectionFromError(file, error) };
    }
  };
  const scanned = await mapFiles(candidates, concurrency, options.onProgress, scanOne);

  const rejected: RejectedFile[] = [];
  const decoded: DecodedImage[] = [];
  for (const s of scanned) {
    if (s.kind === 'image') decoded.push(s.image);
    else if (s.kind === 'rejected') rejected.push(s.rejection);
  }
  // Masks are keyed by SOP instance, so a second copy of an instance could not be told from the first.
  const unique = keepFirstInstance(decoded, (image) => image.identity.sopInstanceUid, rejected);
  // Classes that are not the mask's are settled first: an image without one needs no mask.
  const classOf = new Map<string, number>();
  const images = unique.filter((image) => {
    const outcome = options.imageClasses?.of(image.file, image.identity);
    if (typeof outcome === 'number') classOf.set(image.file, outcome);
    else if (outcome !== undefined) rejected.push(outcome);
    return outcome === undefined || typeof outcome === 'number';
  });
  const loaded = new Set(images.map((image) => image.file));

  let geometries: Promise<ReadonlyMap<string, ImageGeometry>> | undefined;
  const imageGeometries = (): Promise<ReadonlyMap<string, ImageGeometry>> => (geometries ??= readGeometries(dir, images, concurrency));
  const classes = studyClasses(segments);
  const common = { dir, classes, segments, geometries: imageGeometries, segmentsRead: parsed.segmentsRead, pngValue: parsed.pngValue };
  const jobs: Array<() => Promise<MaskReading>> = [];
  for (const s of scanned) {
    if (s.kind === 'mask-object') jobs.push(() => readStudyMask({ ...common, file: s.file, kind: s.object, bytes: s.bytes }));
    if (s.kind !== 'png-mask') continue;
    const beside = pngMasks.get(s.file) ?? [];
    const [image] = beside;
    if (image === undefined) {
      rejected.push(rejection(s.file, 'missing-image', `${s.file}: no image ${s.file.slice(0, -PNG_MASK_SUFFIX.length)}.<ext> beside it`));
    } else if (beside.length > 1) {
      const refused = rejection(s.file, 'mask-mismatch', `${s.file}: could belong to ${beside.join(' or ')}; rename so one image matches`);
      jobs.push(() => Promise.resolve({ ok: false, rejection: refused, claimed: beside.map(fileKey) }));
    } else if (!loaded.has(image)) {
      rejected.push(rejection(s.file, 'missing-image', `${s.file}: its image ${image} was not loaded (see its own rejection)`));
    } else {
      jobs.push(() => readStudyMask({ ...common, file: s.file, kind: 'png', imageKey: fileKey(image) }));
    }
  }
  const readings = await mapWithConcurrency(jobs, concurrency, (job) => job());

  const maskFiles: MaskFile[] = [];
  // Images whose mask was in a file that could not be used: neither unmasked nor background, but refused.
  const spoiled = new Map<string, RejectedFile>();
  for (const reading of readings) {
    if (reading.ok) maskFiles.push(reading.maskFile);
    else {
      rejected.push(reading.rejection);
      for (const key of reading.claimed) spoiled.set(key, reading.rejection);
    }
  }

  const refs = images.map((image, index) => ({ index, sopInstanceUid: image.identity.sopInstanceUid, fileKey: fileKey(image.file), rows: image.rows, columns: image.columns }));
  const match = matchMasks(refs, maskFiles, { mismatches: 'report' });
  const masks = new Array<Uint8Array | undefined>(images.length);
  const maskFileOf = new Array<string | undefined>(images.length);
  const refuse = new Set<number>();
  for (const ref of refs) {
    const bad = [ref.sopInstanceUid, ref.fileKey].map((k) => (k === undefined ? undefined : spoiled.get(k))).find((r) => r !== undefined);
    if (bad === undefined) continue;
    refuse.add(ref.index);
    rejected.push(rejection(images[ref.index]?.file ?? '', 'mask-mismatch', `${images[ref.index]?.file ?? ''}: its mask file ${bad.file} cannot be used (${bad.message})`));
  }
  for (const pair of match.pairs) {
    if (refuse.has(pair.image.index)) continue;
    const mask = preprocessMask(pair.mask, pipeline);
    if (parsed.emptyMasks === 'reject' && !mask.some((v) => v !== 0)) {
      refuse.add(pair.image.index);
      const file = images[pair.image.index]?.file ?? '';
      rejected.push(rejection(file, 'missing-mask', `${file}: its mask in ${pair.file} outlines no ${segments.join(' or ')} on the study's ${inputSize}x${inputSize} grid`));
      continue;
    }
    masks[pair.image.index] = mask;
    maskFileOf[pair.image.index] = pair.file;
  }
  for (const { image, error } of match.mismatched) {
    if (refuse.has(image.index)) continue;
    refuse.add(image.index);
    rejected.push(rejection(images[image.index]?.file ?? '', 'mask-mismatch', error.message));
  }
  for (const image of match.imagesWithoutMask) {
    if (refuse.has(image.index)) continue;
    if (unmasked === 'background') {
      masks[image.index] = new Uint8Array(inputSize * inputSize);
      continue;
    }
    refuse.add(image.index);
    const file = images[image.index]?.file ?? '';
    const uid = image.sopInstanceUid === undefined ? '' : `no Segmentation or RT Structure Set for SOP Instance UID ${image.sopInstanceUid}, `;
    rejected.push(rejection(file, 'missing-mask', `${file}: no mask (${uid}no ${file.replace(/\.[^./]*$/, '')}${PNG_MASK_SUFFIX} beside it)`));
  }
  const orphans = new Map<string, string[]>();
  for (const { key, file } of match.masksWithoutImage) orphans.set(file, [...(orphans.get(file) ?? []), key]);
  const masksIn = new Map(maskFiles.map((m) => [m.file, m.masks.size]));
  for (const [file, keys] of orphans) {
    const total = masksIn.get(file) ?? keys.length;
    const first = keys[0]?.replace(/^file:/, '') ?? '';
    rejected.push(rejection(file, 'missing-image', `${file}: ${keys.length} of its ${total} mask(s) are for images not loaded from ${options.dir} (first: ${first})`));
  }

  const kept = images.map((image, index) => ({ ...image, mask: masks[index], maskFile: maskFileOf[index] })).filter((image, index) => !refuse.has(index) && image.mask !== undefined);
  const pixels = inputSize * inputSize;
  const maskData = stack(
    kept.map((k) => k.mask as Uint8Array),
    pixels,
    (n) => new Uint8Array(n),
  );
  const labels = Int32Array.from(kept, (k) => classOf.get(k.file) ?? ((k.mask as Uint8Array).some((v) => v !== 0) ? 1 : 0));
  const pixelCounts = new Array<number>(segments.length + 1).fill(0);
  for (const value of maskData) pixelCounts[value] = (pixelCounts[value] ?? 0) + 1;
  const classNames = options.imageClasses?.names ?? SEGMENTATION_IMAGE_CLASSES;
  const classCounts: Record<string, number> = Object.fromEntries(classNames.map((name) => [name, 0]));
  for (const label of labels) {
    const name = classNames[label] ?? String(label);
    classCounts[name] = (classCounts[name] ?? 0) + 1;
  }

  const rejectedByReason = tallyRejections(rejected, log);
  const level = rejected.length > 0 ? 'warn' : 'info';
  log[level]({ dir: options.dir, accepted: kept.length, rejected: rejected.length, rejectedByReason, maskFiles: maskFiles.length, classCounts }, 'segmentation dataset loaded');

  return {
    images: {
      images: stack(
        kept.map((k) => k.pixels),
        pixels * channels,
        (n) => new Float32Array(n),
      ),
      labels,
      count: kept.length,
      height: inputSize,
      width: inputSize,
      channels,
      groups: groupsOf(kept),
      masks: maskData,
    },
    rejected,
    classCounts,
    files: kept.map((k) => k.file),
    maskFiles: kept.map((k) => k.maskFile),
    segments: [...segments],
    pixelCounts,
  };
}

/** Geometry of the loaded DICOM images by SOP Instance UID, for RT Structure Sets; an image without one is left out. */
async function readGeometries(dir: string, images: readonly DecodedImage[], concurrency: number): Promise<ReadonlyMap<string, ImageGeometry>> {
  const dicom = images.filter((image) => image.dicom && image.identity.sopInstanceUid !== undefined);
  const found = await mapFiles(
    dicom.map((image) => image.file),
    concurrency,
    undefined,
    async (file) => {
      try {
        return readImageGeometry(await readFile(join(dir, file)), { file });
      } catch (error) {
        log.debug({ file, err: describeError(error) }, 'no geometry: RT Structure Set contours cannot be placed on this image');
        return undefined;
      }
    },
  );
  return new Map(found.flatMap((g) => (g === undefined ? [] : [[g.sopInstanceUid, g.geometry] as const])));
}
