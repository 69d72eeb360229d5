import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseLabelsCsv } from '../dataset/labels-csv.js';
import { listFiles } from '../dataset/load.js';
import { mapWithConcurrency } from '../dataset/concurrency.js';
import { decodeAllFrames, decodeDicom, type DicomImage } from '../dicom/reader.js';
import { isDicomRejection } from '../dicom/rejection.js';
import type { PixelArray } from '../dicom/pixels.js';

export interface ScanRejection {
  file: string;
  reason: string;
  message: string;
}

/** What `federa-site data scan` finds in a dataset folder. */
export interface ScanReport {
  files: number;
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
  /** Labels CSV (`file,label`); without it files are checked for decoding only. */
  labelsCsv?: string;
  onProgress?: (done: number, total: number) => void;
}

const bump = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/**
 * Decodes every file under the dataset folder (every frame, so a file truncated in its last frame is caught)
 * and counts what a site has by class, modality, transfer syntax and image size. Files that cannot be trained
 * on are listed with their reason; nothing is thrown for a bad file.
 */
export async function scanDataset(options: ScanOptions): Promise<ScanReport> {
  const labels = new Map<string, string>();
  const labelsPath = options.labelsCsv ? resolve(options.labelsCsv) : undefined;
  if (labelsPath) {
    for (const row of parseLabelsCsv(await readFile(labelsPath, 'utf8'), labelsPath)) labels.set(row.file, row.label);
  }
  const files = (await listFiles(options.dir)).filter((f) => resolve(options.dir, f) !== labelsPath);
  const report: ScanReport = {
    files: files.length,
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
    const outcome = await examine(resolve(options.dir, file), file);
    options.onProgress?.(++done, files.length);
    return { file, outcome };
  });
  for (const { file, outcome } of outcomes) {
    if (!outcome.ok) {
      reject(file, outcome.reason, outcome.message);
      continue;
    }
    const label = labels.get(file);
    if (labelsPath && label === undefined) {
      reject(file, 'missing-label', `${file} has no row in ${labelsPath}`);
      continue;
    }
    report.accepted++;
    const { header } = outcome.image;
    bump(report.byModality, header.modality ?? '(none)');
    bump(report.byTransferSyntax, `${header.transferSyntaxName} (${header.transferSyntaxUid})`);
    bump(report.bySize, `${header.columns}x${header.rows}${header.numberOfFrames > 1 ? `x${header.numberOfFrames}` : ''}`);
    if (label !== undefined) bump(report.byClass, label);
  }
  const present = new Set(files);
  for (const file of labels.keys()) {
    if (!present.has(file)) reject(file, 'missing-file', `${labelsPath} lists ${file}, which is not in ${options.dir}`);
  }
  report.rejected.sort((a, b) => a.file.localeCompare(b.file));
  return report;
}

type Examined = { ok: true; image: DicomImage } | { ok: false; reason: string; message: string };

async function examine(path: string, file: string): Promise<Examined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    return { ok: false, reason: 'read-error', message: `${file}: ${(error as Error).message}` };
  }
  try {
    const image = decodeDicom(bytes, { file });
    decodeAllFrames(image);
    return { ok: true, image };
  } catch (error) {
    if (isDicomRejection(error)) return { ok: false, reason: error.reason, message: error.message };
    return { ok: false, reason: 'decode-error', message: `${file}: ${(error as Error).message}` };
  }
}

/** The only part of a scan that may leave the site: counts, no file names, no header values beyond categories. */
export function scanSummaryForCoordinator(report: ScanReport): Omit<ScanReport, 'rejected'> {
  const { rejected: _rejected, ...counts } = report;
  return counts;
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
  /** Set when raw stored values were written. */
  raw?: { path: string; bytes: number; frames: number };
}

export async function inspectDicomFile(path: string, rawOut?: string): Promise<InspectResult> {
  const outcome = await examine(path, path);
  if (!outcome.ok) return { file: path, status: 'rejected', reason: outcome.reason, message: outcome.message };
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
