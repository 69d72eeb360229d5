import { readFile } from 'node:fs/promises';
import { createLogger } from '@federa/shared';
import { z } from 'zod';
import { defaultCodecs, type CodecRegistry } from '../dicom/codecs.js';
import { MAX_INFLATED_BYTES, parseStructure, type ParsedStructure } from '../dicom/parse.js';
import { DicomRejection } from '../dicom/rejection.js';
import { A, text } from './attributes.js';
import { decodeSegDataset, SEGMENTATION_SOP_CLASS_UIDS } from './dicom-seg.js';
import { MaskError } from './errors.js';
import { isPng, readPngMask } from './png-mask.js';
import { decodeRtStructDataset, RT_STRUCTURE_SET_SOP_CLASS_UID } from './rtstruct.js';
import type { ImageGeometry, MaskFile } from './types.js';

const log = createLogger('site-agent.masks');

export interface ReadMaskFileOptions {
  /** Name used in messages and on the result; defaults to the path. */
  readonly file?: string;
  readonly codecs?: CodecRegistry;
  readonly maxInflatedBytes?: number;
  /** PNG: the key (image SOP Instance UID or file key) the mask belongs to; defaults to `file`. */
  readonly imageKey?: string;
  /** PNG: pixel value to label (see readPngMask). */
  readonly valueLabels?: ReadonlyMap<number, number>;
  readonly labelNames?: ReadonlyMap<number, string>;
  /** RT Structure Set: where the images lie (required to rasterise); SEG: to place frames that name no image. */
  readonly geometries?: ReadonlyMap<string, ImageGeometry>;
  /** RT Structure Set: ROI name to label (see readRtStruct). */
  readonly roiLabels?: ReadonlyMap<string, number>;
  /** DICOM SEG: Segment Label to label; segments not named are left out (see ReadSegOptions). */
  readonly segmentLabels?: ReadonlyMap<string, number>;
  readonly planeToleranceMm?: number;
}

const label = z.number().int().min(0).max(255);

/** Value-to-label maps as a study or site configures them in JSON: `{ "255": 1, "128": 2 }`. */
export const maskValueLabelsSchema = z
  .record(z.string().regex(/^\d+$/, 'mask values are non-negative integers'), label)
  .transform((record) => new Map(Object.entries(record).map(([value, l]) => [Number(value), l])));

/** ROI-name-to-label maps as configured in JSON: `{ "GTV": 1, "CTV": 2 }`. */
export const roiLabelsSchema = z.record(z.string().min(1), label.min(1)).transform((record) => new Map(Object.entries(record)));

/** Reads a mask file by its content (PNG signature, else the DICOM SOP Class), not by its name. */
export async function decodeMaskFile(bytes: Uint8Array, options: ReadMaskFileOptions = {}): Promise<MaskFile> {
  const file = options.file ?? '<memory>';
  if (isPng(bytes)) {
    return readPngMask(bytes, { file, imageKey: options.imageKey, valueLabels: options.valueLabels, labelNames: options.labelNames });
  }
  const codecs = options.codecs ?? defaultCodecs;
  const maxInflatedBytes = options.maxInflatedBytes ?? MAX_INFLATED_BYTES;
  let parsed: ParsedStructure;
  try {
    parsed = parseStructure(bytes, { file, codecs, maxInflatedBytes });
  } catch (error) {
    // Damaged DICOM keeps the reader's own reason (truncated, corrupt...); anything else is simply not a mask.
    if (error instanceof DicomRejection && error.reason === 'not-dicom') {
      throw new MaskError(file, 'not-a-mask', 'neither PNG nor DICOM', { cause: error });
    }
    throw error;
  }
  const sopClass = text(parsed.dataSet, A.sopClassUid);
  if (sopClass !== undefined && SEGMENTATION_SOP_CLASS_UIDS.has(sopClass)) {
    return decodeSegDataset(bytes, parsed, { file, codecs, maxInflatedBytes, sourceGeometries: options.geometries, segmentLabels: options.segmentLabels });
  }
  if (sopClass === RT_STRUCTURE_SET_SOP_CLASS_UID) {
    return decodeRtStructDataset(parsed, { file, geometries: options.geometries, roiLabels: options.roiLabels, planeToleranceMm: options.planeToleranceMm });
  }
  throw new MaskError(file, 'not-a-mask', `DICOM ${A.sopClassUid.name} ${sopClass ?? '(missing)'} is neither Segmentation nor RT Structure Set`);
}

/** Reads a mask file from disk; I/O errors propagate unchanged. */
export async function readMaskFile(path: string, options: ReadMaskFileOptions = {}): Promise<MaskFile> {
  const result = await decodeMaskFile(await readFile(path), { ...options, file: options.file ?? path });
  // What was left out is returned too; the log keeps it visible when the caller only counts masks.
  if (result.unresolved.length > 0) log.debug({ file: result.file, kind: result.kind, unresolved: result.unresolved }, 'parts of a mask file could not be tied to an image');
  return result;
}
