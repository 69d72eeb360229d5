import { join } from 'node:path';
import { createLogger, type ModelSpec, type Preprocessing } from '@federa/shared';
import type { SiteConfig } from '../config/index.js';
import { loadLabeledDataset, pipelineHash, prepareSiteDataset, type LoadedDataset } from '../data/index.js';
import type { LabeledImages } from '../train/index.js';
import { splitTrainValidation } from './split.js';

export interface PreparedData {
  train: LabeledImages;
  validation: LabeledImages;
  rejected: number;
  /** What the dataset summary is made from: file lists and counts, not the pixels. */
  contents: Pick<LoadedDataset, 'files' | 'classCounts' | 'rejected'>;
}

/**
 * The site's images, decoded and preprocessed once per input shape and study pipeline and reused every round; the
 * tensors are also cached under the state folder, so a restarted agent does not decode again.
 */
export class SiteData {
  private readonly log = createLogger('site-agent.data');
  private readonly prepared = new Map<string, Promise<PreparedData>>();

  constructor(
    private readonly config: SiteConfig,
    private readonly onProgress?: (done: number, total: number) => void,
  ) {}

  prepare(spec: ModelSpec, classNames: string[], preprocessing: Preprocessing): Promise<PreparedData> {
    const shape = { inputSize: spec.inputSize, channels: spec.channels, preprocessing };
    const key = `${pipelineHash(shape)}/${classNames.join(',')}/${spec.seed}`;
    let prepared = this.prepared.get(key);
    if (!prepared) {
      prepared = this.load(spec, classNames, shape);
      prepared.catch(() => this.prepared.delete(key));
      this.prepared.set(key, prepared);
    }
    return prepared;
  }

  private async load(
    spec: ModelSpec,
    classNames: string[],
    shape: { inputSize: number; channels: ModelSpec['channels']; preprocessing: Preprocessing },
  ): Promise<PreparedData> {
    // A PACS source is synced into its cache first (only new instances are retrieved), then loaded like a folder.
    const dataset = await prepareSiteDataset(this.config.data);
    const loaded = await loadLabeledDataset({
      dir: dataset.dir,
      labelsCsv: dataset.labelsCsv,
      files: dataset.files,
      ...shape,
      classNames,
      cacheDir: join(this.config.stateDir, 'tensor-cache'),
      ...(this.onProgress ? { onProgress: this.onProgress } : {}),
    });
    // File paths can carry patient names: they are logged at debug level only; the counts say enough above it.
    const byReason: Record<string, number> = {};
    for (const rejected of loaded.rejected) {
      byReason[rejected.reason] = (byReason[rejected.reason] ?? 0) + 1;
      this.log.debug({ file: rejected.file, reason: rejected.reason }, `skipped: ${rejected.message}`);
    }
    if (loaded.rejected.length > 0) {
      this.log.warn({ rejected: loaded.rejected.length, byReason }, 'skipped files this site cannot use; `federa-site data scan` lists them');
    }
    // Split by patient: the count of groups is logged, never what they are keyed by.
    const split = splitTrainValidation(loaded.images, this.config.data.validationFraction, spec.seed);
    const groups = new Set(loaded.images.groups).size;
    this.log.info(
      { train: split.train.count, validation: split.validation.count, groups, rejected: loaded.rejected.length, classCounts: loaded.classCounts, cachedTensors: loaded.cache.hits },
      'dataset ready',
    );
    if (this.config.data.validationFraction > 0 && split.validation.count === 0 && loaded.images.count > 1) {
      // Typically an export that gave every image the same Patient ID: the whole site is one "patient".
      this.log.warn({ images: loaded.images.count, groups }, 'no validation images: too few patient groups to hold any out; validation metrics will be missing');
    }
    return { ...split, rejected: loaded.rejected.length, contents: { files: loaded.files, classCounts: loaded.classCounts, rejected: loaded.rejected } };
  }
}
