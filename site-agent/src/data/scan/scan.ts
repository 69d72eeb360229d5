import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { DatasetLabels, identityOf, type DatasetLayout } from '../dataset/labels.js';
import { listFiles } from '../dataset/load.js';
import { maskObjectIn, pngMasksBesideImages } from '../dataset/load-common.js';
import { mapWithConcurrency } from '../dataset/concurrency.js';
import { decodeAllFrames, decodeDicom, type DicomImage } from '../dicom/reader.js';
import { isDicomRejection } from '../dicom/rejection.js';
import type { PixelArray } from '../dicom/pixels.js';
import { decodeRaster, sniffRasterFormat, type RasterImage } from '../preprocess/raster.js';
import { isImageRejection } from '../preprocess/rejection.js';

export interface ScanRejection {
  file: string;
  reason: string;
  message: string;
}

/** What `federa-site data scan` finds in a dataset folder. */
export interface ScanReport {
  /** How files get their class: 'file', 'sop_instance_uid', 'series_instance_uid', 'study_instance_uid', 'folder', or 'none'. */
  labelledBy: string;
  /** Files examined as images (mask files not included). */
  files: number;
  /** Mask files left aside, as the loaders do: DICOM SEG and RT Structure Sets, `<name>.mask.png` beside an image. */
  masks: number;
  accepted: number;
  byClass: Record<string, number>;
  byModality: Record<string, number>;
  byTransferSyntax: Record<string, number>;
  bySize: Record<string, number>;
  rejected: ScanRejection[];
  rejectedByReason: Record<string, number>;
}

export interface ScanOptions {
  dir: string;
  /** Labels CSV keyed by file path, SOP, Series or Study Instance UID. */
  labelsCsv?: string | undefined;
  /**
   * 'folders': the first folder under `dir` is the class (used when there is no labels CSV). With neither,
   * files are checked for decoding only.
   */
  layout?: 'folders' | undefined;
  /** Only these files (relative to `dir`) instead of everything under it: a PACS selection within its cache. */
  files?: readonly string[] | undefined;
  onProgress?: ((done: number, total: number) => void) | undefined;
}

const bump = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/**
 * Decodes every file under the dataset folder (every frame, so a file truncated in its last frame is caught)
 * and counts what a site has by class, modality, transfer syntax (or PNG/JPEG) and image size, labelling files
 * the way the site's layout declares. Files that cannot be trained on are listed with their reason; nothing
 * is thrown for a bad file.
 */
export async function scanDataset(options: ScanOptions): Promise<ScanReport> {
  const layout: DatasetLayout | undefined = options.labelsCsv
    ? { kind: 'labels-csv', path: options.labelsCsv }
    : options.layout === 'folders'
      ? { kind: 'folders' }
      : undefined;
  const labels = layout ? await DatasetLabels.open(options.dir, layout) : undefined;
  const files = (options.files ? [...options.files] : await listFiles(options.dir)).filter((f) => f !== labels?.csvInsideDir);
  const pngMasks = pngMasksBesideImages(files);
  const report: ScanReport = {
    labelledBy: labels?.keyedBy ?? 'none',
    files: files.length,
    masks: 0,
    accepted: 0,
    byClass: {},
    byModality: {},
    byTransferSyntax: {},
    bySize: {},
    rejected: [],
    rejectedByReason: {},
  };
  const reject = (file: string, reason: string, message: string): void => {
    report.rejected.push({ file, reason, message });
    bump(report.rejectedByReason, reason);
  };
  let done = 0;
  const outcomes = await mapWithConcurrency(files, Math.min(16, availableParallelism() * 2), async (file) => {
    const outcome: Examined | { ok: 'mask' } = pngMasks.has(file) ? { ok: 'mask' } : await examine(resolve(options.dir, file), file, true);
    options.onProgress?.(++done, files.length);
    return { file, outcome };
  });
  const firstWithSop = new Map<string, string>();
  for (const { file, outcome } of outcomes) {
    if (outcome.ok === 'mask') {
      report.masks++;
      continue;
    }
    if (!outcome.ok) {
      reject(file, outcome.reason, outcome.message);
      continue;
    }
    let label: string | undefined;
    if (labels) {
      const found = labels.labelForPath(file) ?? labels.labelForIdentity(file, identityOf(outcome.image));
      if (!found.ok) {
        reject(file, 'missing-label', found.message);
        continue;
      }
      label = found.label;
    }
    const sop = labels?.keyedBy === 'sop_instance_uid' && outcome.kind === 'dicom' ? outcome.image.header.sopInstanceUid : undefined;
    const first = sop !== undefined ? firstWithSop.get(sop) : undefined;
    if (first !== undefined) {
      reject(file, 'duplicate-instance', `${file}: same SOP Instance UID as ${first}, which is used instead`);
      continue;
    }
    if (sop !== undefined) firstWithSop.set(sop, file);
    report.accepted++;
    if (outcome.kind === 'dicom') {
      const { header } = outcome.image;
      bump(report.byModality, header.modality ?? '(none)');
      bump(report.byTransferSyntax, `${header.transferSyntaxName} (${header.transferSyntaxUid})`);
      bump(report.bySize, `${header.columns}x${header.rows}${header.numberOfFrames > 1 ? `x${header.numberOfFrames}` : ''}`);
    } else {
      const { image } = outcome;
      bump(report.byModality, '(none)');
      bump(report.byTransferSyntax, `${image.format.toUpperCase()} file (${image.bitDepth}-bit ${image.channels === 1 ? 'grey' : 'colour'})`);
      bump(report.bySize, `${image.width}x${image.height}`);
    }
    if (label !== undefined) bump(report.byClass, label);
  }
  if (labels) {
    const present = new Set(files);
    for (const file of labels.listedFiles()) {
      if (!present.has(file)) reject(file, 'missing-file', `${options.labelsCsv} lists ${file}, which is not in ${options.dir}`);
    }
    for (const row of labels.unmatchedUidRows()) reject(row.where, 'missing-file', row.message);
  }
  report.files = files.length - report.masks;
  report.rejected.sort((a, b) => a.file.localeCompare(b.file));
  return report;
}

type Examined =
  | { ok: true; kind: 'dicom'; image: DicomImage }
  | { ok: true; kind: 'raster'; image: RasterImage }
  | { ok: false; reason: string; message: string };

/** Decodes a file as an image; with `masksAside`, a Segmentation or RT Structure Set is recognised instead. */
async function examine(path: string, file: string): Promise<Examined>;
async function examine(path: string, file: string, masksAside: true): Promise<Examined | { ok: 'mask' }>;
async function examine(path: string, file: string, masksAside = false): Promise<Examined | { ok: 'mask' }> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { ok: false, reason: 'read-error', message: `${file}: ${(error as Error).message}` };
  }
  if (masksAside && maskObjectIn(bytes) !== undefined) return { ok: 'mask' };
  try {
    if (sniffRasterFormat(bytes) !== undefined) return { ok: true, kind: 'raster', image: await decodeRaster(bytes, file) };
    const image = decodeDicom(bytes, { file });
    decodeAllFrames(image);
    return { ok: true, kind: 'dicom', image };
  } catch (error) {
    if (isDicomRejection(error) || isImageRejection(error)) return { ok: false, reason: error.reason, message: error.message };
    return { ok: false, reason: 'decode-error', message: `${file}: ${(error as Error).message}` };
  }
}

/** What `federa-site data inspect` shows: the header fields that matter for decoding, never patient identity. */
export interface InspectResult {
  file: string;
  status: 'decoded' | 'rejected';
  reason?: string;
  message?: string;
  header?: {
    transferSyntax: string;
    sopClassUid: string | undefined;
    modality: string | undefined;
    rows: number;
    columns: number;
    frames: number;
    samplesPerPixel: number;
    photometricInterpretation: string;
    planarConfiguration: number;
    bitsAllocated: number;
    bitsStored: number;
    highBit: number;
    pixelRepresentation: number;
    rescaleSlope: number;
    rescaleIntercept: number;
    windowCenter: number | undefined;
    windowWidth: number | undefined;
  };
  /** For a PNG or JPEG: what the decoder made of it. */
  image?: { format: string; width: number; height: number; channels: number; bitDepth: number };
  /** Set when raw stored values were written. */
  raw?: { path: string; bytes: number; frames: number };
}

export async function inspectDicomFile(path: string, rawOut?: string): Promise<InspectResult> {
  const outcome = await examine(path, path);
  if (!outcome.ok) return { file: path, status: 'rejected', reason: outcome.reason, message: outcome.message };
  if (outcome.kind === 'raster') {
    const { format, width, height, channels, bitDepth, pixels } = outcome.image;
    const result: InspectResult = { file: path, status: 'decoded', image: { format, width, height, channels, bitDepth } };
    if (rawOut) {
      const bytes = littleEndianBytes(pixels);
      await writeFile(rawOut, bytes);
      result.raw = { path: rawOut, bytes: bytes.byteLength, frames: 1 };
    }
    return result;
  }
  const { header } = outcome.image;
  const result: InspectResult = {
    file: path,
    status: 'decoded',
    header: {
      transferSyntax: `${header.transferSyntaxName} (${header.transferSyntaxUid})`,
      sopClassUid: header.sopClassUid,
      modality: header.modality,
      rows: header.rows,
      columns: header.columns,
      frames: header.numberOfFrames,
      samplesPerPixel: header.samplesPerPixel,
      photometricInterpretation: header.photometricInterpretation,
      planarConfiguration: header.planarConfiguration,
      bitsAllocated: header.bitsAllocated,
      bitsStored: header.bitsStored,
      highBit: header.highBit,
      pixelRepresentation: header.pixelRepresentation,
      rescaleSlope: header.rescaleSlope,
      rescaleIntercept: header.rescaleIntercept,
      windowCenter: header.windowCenter,
      windowWidth: header.windowWidth,
    },
  };
  if (rawOut) {
    const frames = decodeAllFrames(outcome.image);
    const bytes = Buffer.concat(frames.map(littleEndianBytes));
    await writeFile(rawOut, bytes);
    result.raw = { path: rawOut, bytes: bytes.byteLength, frames: frames.length };
  }
  return result;
}

/** Stored values as little-endian bytes in their stored type, whatever the host's byte order. */
export function littleEndianBytes(values: PixelArray): Buffer {
  const out = Buffer.alloc(values.length * values.BYTES_PER_ELEMENT);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    switch (values.BYTES_PER_ELEMENT) {
      case 1:
        if (values instanceof Int8Array) out.writeInt8(v, i);
        else out.writeUInt8(v, i);
        break;
      case 2:
        if (values instanceof Int16Array) out.writeInt16LE(v, i * 2);
        else out.writeUInt16LE(v, i * 2);
        break;
      case 8:
        out.writeDoubleLE(v, i * 8);
        break;
      default:
        if (values instanceof Float32Array) out.writeFloatLE(v, i * 4);
        else if (values instanceof Int32Array) out.writeInt32LE(v, i * 4);
        else out.writeUInt32LE(v, i * 4);
    }
  }
  return out;
}
