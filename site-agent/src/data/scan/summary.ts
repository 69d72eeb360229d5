import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  modalityCategory,
  NO_MODALITY,
  sizeBucket,
  transferSyntaxCategory,
  type DatasetSummary,
} from '@federa/shared';
import { mapWithConcurrency } from '../dataset/concurrency.js';
import type { LoadedDataset } from '../dataset/load.js';
import { decodeDicom } from '../dicom/reader.js';
import { sniffRasterFormat } from '../preprocess/raster.js';

/** The categories one accepted image is counted under. */
interface ImageCategories {
  modality: string;
  transferSyntax: string;
  size: string;
}

const bump = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

/**
 * The description of a loaded dataset that may leave the site: counts by class, modality, transfer syntax (or
 * image format), size bucket and rejection reason, every category from the closed sets in @federa/shared. File
 * names, identifiers and every other header value stay here. The loader does not keep modality, syntax or size,
 * so each accepted file's header is read again (no pixel decoding).
 */
export async function summariseLoadedDataset(
  dir: string,
  loaded: Pick<LoadedDataset, 'files' | 'classCounts' | 'rejected'>,
): Promise<DatasetSummary> {
  const summary: DatasetSummary = {
    files: loaded.files.length + loaded.rejected.length,
    accepted: loaded.files.length,
    byClass: { ...loaded.classCounts },
    byModality: {},
    byTransferSyntax: {},
    bySize: {},
    rejectedByReason: {},
  };
  for (const rejection of loaded.rejected) bump(summary.rejectedByReason, rejection.reason);
  // A file that changed since it was loaded throws here: no summary is better than one of other data.
  const categories = await mapWithConcurrency(loaded.files, Math.min(16, availableParallelism() * 2), (file) => categoriesOf(join(dir, file), file));
  for (const found of categories) {
    bump(summary.byModality, found.modality);
    bump(summary.byTransferSyntax, found.transferSyntax);
    bump(summary.bySize, found.size);
  }
  return summary;
}

async function categoriesOf(path: string, file: string): Promise<ImageCategories> {
  const bytes = await readFile(path);
  const format = sniffRasterFormat(bytes);
  if (format !== undefined) {
    // Header only: sharp reads the dimensions without decoding the pixels.
    const meta = await sharp(bytes).metadata();
    return { modality: NO_MODALITY, transferSyntax: format === 'png' ? 'PNG' : 'JPEG', size: sizeBucket(meta.width ?? 0, meta.height ?? 0) };
  }
  const { header } = decodeDicom(bytes, { file });
  return {
    modality: modalityCategory(header.modality),
    transferSyntax: transferSyntaxCategory(header.transferSyntaxUid),
    size: sizeBucket(header.columns, header.rows),
  };
}
