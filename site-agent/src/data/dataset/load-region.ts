import { resolve } from 'node:path';
import { z } from 'zod';
import { DatasetLabels, type DatasetLayout, type ImageIdentity } from './labels.js';
import { parseLoaderOptions, rejection } from './load-common.js';
import { labeledOptionsSchema, listFiles, type LoadLabeledDatasetOptions, type RejectedFile } from './load.js';
import { loadSegmentationDataset, type LoadedSegmentationDataset } from './load-segmentation.js';

/**
 * A classification dataset whose model looks only inside one structure (a linear model with region: 'mask'): each
 * image keeps its class from the labels CSV or its class folder, as loadLabeledDataset gives it, and gains the
 * mask of the named structure from a DICOM SEG (by Segment Label), an RT Structure Set (by ROI Name, rasterised on
 * the image grid) or a `<name>.mask.png` beside it, both through the study's preprocessing. Other structures in
 * the same files are left out (they cannot paint over the region), and a file holding none of the structure is
 * set aside. An image without the structure, or whose structure vanishes on the study's grid, is rejected with
 * reason 'missing-mask': its features would describe no pixel.
 */

export type LoadRegionDatasetOptions = Omit<LoadLabeledDatasetOptions, 'cacheDir'> & {
  /** The structure's name as the masks give it (compared trimmed and case-insensitively). */
  segment: string;
  /** In PNG masks: the value that marks the structure; omitted, any non-zero value. */
  pngValue?: number | undefined;
};

export type LoadedRegionDataset = Pick<LoadedSegmentationDataset, 'images' | 'rejected' | 'classCounts' | 'files' | 'maskFiles'>;

const optionsSchema = labeledOptionsSchema.omit({ cacheDir: true }).extend({
  segment: z.string().trim().min(1, 'segment must name a structure'),
  pngValue: z.number().int().min(1).max(255).optional(),
});

export async function loadRegionDataset(options: LoadRegionDatasetOptions): Promise<LoadedRegionDataset> {
  const parsed = parseLoaderOptions(optionsSchema, options, 'loadRegionDataset');
  const dir = resolve(options.dir);
  const layout: DatasetLayout = options.labelsCsv ? { kind: 'labels-csv', path: options.labelsCsv } : { kind: 'folders' };
  const labels = await DatasetLabels.open(dir, layout);
  const classIndex = new Map(parsed.classNames.map((name, i) => [name, i]));
  const classOf = (file: string, identity: ImageIdentity): number | RejectedFile => {
    const found = labels.labelForPath(file) ?? labels.labelForIdentity(file, identity);
    if (!found.ok) return rejection(file, 'missing-label', found.message);
    const index = classIndex.get(found.label);
    if (index !== undefined) return index;
    const what = labels.keyedBy === 'folder' ? `folder "${found.label}"` : `label "${found.label}"`;
    return rejection(file, 'unknown-label', `${file}: ${what} is not one of ${parsed.classNames.join(', ')}`);
  };
  const onDisk = options.files ?? (await listFiles(dir));
  const loaded = await loadSegmentationDataset({
    dir,
    files: onDisk,
    exclude: labels.csvInsideDir === undefined ? [] : [labels.csvInsideDir],
    inputSize: parsed.inputSize,
    channels: parsed.channels,
    preprocessing: parsed.preprocessing,
    segments: [parsed.segment],
    segmentsRead: 'named',
    pngValue: parsed.pngValue,
    unmasked: 'reject',
    emptyMasks: 'reject',
    imageClasses: { names: parsed.classNames, of: classOf },
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(parsed.concurrency !== undefined ? { concurrency: parsed.concurrency } : {}),
  });
  // Rows no image answered to, as the classification loader reports them.
  const present = new Set(onDisk);
  const missing = labels
    .listedFiles()
    .filter((file) => !present.has(file))
    .map((file) => rejection(file, 'missing-file', `${file}: listed in ${options.labelsCsv ?? 'the labels'} but not found under ${options.dir}`));
  const unmatched = labels.unmatchedUidRows().map((row) => rejection(row.where, 'missing-file', row.message));
  return { ...loaded, rejected: [...loaded.rejected, ...missing, ...unmatched] };
}
