import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DicomRejection } from '../dicom/rejection.js';
import { MaskError } from '../masks/errors.js';
import { decodeMaskFile } from '../masks/read-mask.js';
import type { ImageGeometry, LabelMask, MaskFile } from '../masks/types.js';
import { describeError, rejection } from './load-common.js';
import type { RejectedFile } from './load.js';

/**
 * Mask files as the segmentation loader reads them: every label mapped to the study's class index, so masks
 * from SEG, RT Structure Sets and PNG share one numbering (0 background, i + 1 for the study's segment i).
 */

/** Segment names are compared trimmed and case-insensitively, as RT Structure Set ROI names are. */
export const segmentKey = (name: string): string => name.trim().toLowerCase();

/** Study segment name (compared by segmentKey) to class index. */
export function studyClasses(segments: readonly string[]): ReadonlyMap<string, number> {
  return new Map(segments.map((name, i) => [segmentKey(name), i + 1]));
}

/**
 * How a PNG mask's values become classes: a value is the class index (0 background, k the study's k-th
 * segment); with one segment any non-zero value is that segment, so 0/255 masks work as they are saved.
 */
export function pngMaskReading(segments: readonly string[], onlyValue?: number): { valueLabels: ReadonlyMap<number, number> | undefined; labelNames: ReadonlyMap<number, string> } {
  const labelNames = new Map(segments.map((name, i) => [i + 1, name]));
  // One value marks the one segment; every other value (other structures a label map holds) is background.
  if (onlyValue !== undefined && segments.length === 1) return { valueLabels: new Map(Array.from({ length: 256 }, (_, v) => [v, v === onlyValue ? 1 : 0])), labelNames };
  if (segments.length === 1) return { valueLabels: undefined, labelNames };
  return { valueLabels: new Map(Array.from({ length: segments.length + 1 }, (_, v) => [v, v])), labelNames };
}

/**
 * The file's masks with labels turned into study class indices by segment label. A segment the study does not
 * name is refused (MaskError 'mismatch' naming it): training on it as background would teach the model wrong.
 */
export function toStudyClasses(maskFile: MaskFile, classes: ReadonlyMap<string, number>, segments: readonly string[]): MaskFile {
  const unknown = maskFile.segments.filter((s) => !classes.has(segmentKey(s.label)));
  if (unknown.length > 0) {
    const named = unknown.map((s) => `"${s.label}" (${s.number})`).join(', ');
    throw new MaskError(maskFile.file, 'mismatch', `segment${unknown.length > 1 ? 's' : ''} ${named} ${unknown.length > 1 ? 'are' : 'is'} not among the study's segments (${segments.join(', ')})`);
  }
  // -1: a value no segment describes; the readers never produce one, but a wrong class must not slip through.
  const lut = new Int16Array(256).fill(-1);
  lut[0] = 0;
  for (const s of maskFile.segments) lut[s.number] = classes.get(segmentKey(s.label)) ?? -1;
  const masks = new Map<string, LabelMask>();
  for (const [key, mask] of maskFile.masks) {
    const labels = new Uint8Array(mask.labels.length);
    for (let p = 0; p < labels.length; p++) {
      const value = mask.labels[p] ?? 0;
      const mapped = lut[value] ?? -1;
      if (mapped < 0) throw new MaskError(maskFile.file, 'invalid', `mask for image ${key} holds label ${value}, which no segment describes`);
      labels[p] = mapped;
    }
    masks.set(key, { rows: mask.rows, columns: mask.columns, labels });
  }
  return { ...maskFile, masks };
}

/** What reading one mask file gave: its masks in study classes, or a rejection (with the keys it claimed, if known). */
export type MaskReading = { ok: true; maskFile: MaskFile } | { ok: false; rejection: RejectedFile; claimed: readonly string[] };

export interface ReadStudyMaskOptions {
  readonly dir: string;
  readonly file: string;
  readonly classes: ReadonlyMap<string, number>;
  readonly segments: readonly string[];
  /** RT Structure Sets (and SEG frames that name no image) need the images' geometry. */
  readonly geometries?: (() => Promise<ReadonlyMap<string, ImageGeometry>>) | undefined;
  readonly kind: 'dicom-seg' | 'rtstruct' | 'png';
  /** PNG: the key of the image it belongs to. */
  readonly imageKey?: string | undefined;
  /** Read bytes already in hand (the loader sniffed them), else the file is read. */
  readonly bytes?: Uint8Array | undefined;
  /**
   * 'all' (default): every segment a file holds must be one of the study's. 'named': only the study's segments
   * are read and any other is left out; a DICOM file holding none of them is about other structures and claims
   * no image (used where masks only outline the region a model looks at).
   */
  readonly segmentsRead?: 'all' | 'named' | undefined;
  /** PNG masks with segmentsRead 'named': the one value that marks the (single) segment; others are background. */
  readonly pngValue?: number | undefined;
}

/** Reads a mask file into study classes; never throws for a bad file (I/O, DICOM or mask errors become rejections). */
export async function readStudyMask(options: ReadStudyMaskOptions): Promise<MaskReading> {
  const { file, kind } = options;
  let claimed: readonly string[] = options.imageKey === undefined ? [] : [options.imageKey];
  try {
    const bytes = options.bytes ?? (await readFile(join(options.dir, file)));
    const named = options.segmentsRead === 'named';
    const png = kind === 'png' ? pngMaskReading(options.segments, named ? options.pngValue : undefined) : undefined;
    const read = async (geometries: ReadonlyMap<string, ImageGeometry> | undefined): Promise<MaskFile> =>
      decodeMaskFile(bytes, {
        file,
        imageKey: options.imageKey,
        valueLabels: png?.valueLabels,
        labelNames: png?.labelNames,
        geometries,
        ...(named ? { segmentLabels: options.classes, roiLabels: options.classes } : {}),
      });
    let maskFile = await read(kind === 'rtstruct' ? await options.geometries?.() : undefined);
    // A SEG whose frames name their images needs no geometry; only frames placed by position do.
    if (kind === 'dicom-seg' && maskFile.unresolved.length > 0 && options.geometries !== undefined) maskFile = await read(await options.geometries());
    if (named) {
      // Labels are already the study's classes; a file about other structures only is set aside.
      if (kind !== 'png' && maskFile.segments.length === 0) return { ok: true, maskFile: { ...maskFile, masks: new Map() } };
      claimed = [...maskFile.masks.keys()];
      return { ok: true, maskFile };
    }
    claimed = [...maskFile.masks.keys()];
    return { ok: true, maskFile: toStudyClasses(maskFile, options.classes, options.segments) };
  } catch (error) {
    if (error instanceof MaskError) return { ok: false, rejection: rejection(file, 'mask-mismatch', error.message), claimed };
    if (error instanceof DicomRejection) return { ok: false, rejection: rejection(file, error.reason, error.message), claimed };
    return { ok: false, rejection: rejection(file, 'read-error', `${file}: ${describeError(error)}`), claimed };
  }
}
