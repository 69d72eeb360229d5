import { join, relative, sep } from 'node:path';
import { architectureTask, createLogger, isLinearArchitecture, type ModelSpec, type Preprocessing, type StudyDefinition } from '@federa/shared';
import type { SiteConfig } from '../config/index.js';
import { loadLabeledDataset, loadRegionDataset, loadSegmentationDataset, pipelineHash, prepareSiteDataset, type LoadedDataset, type RejectedFile } from '../data/index.js';
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

  /**
   * The study's data: labelled images for a classifier; with their masks for a segmentation model, and with the
   * mask of the structure it looks inside for a linear model on region: 'mask'.
   */
  prepare(def: Pick<StudyDefinition, 'model' | 'classNames' | 'preprocessing' | 'segmentation'>): Promise<PreparedData> {
    const { model: spec, classNames, preprocessing } = def;
    const shape = { inputSize: spec.inputSize, channels: spec.channels, preprocessing };
    const segmentation = architectureTask(spec.architecture) === 'segmentation' ? { unmaskedImages: def.segmentation?.unmaskedImages ?? 'reject' } : undefined;
    const region = isLinearArchitecture(spec.architecture) && 'region' in spec && spec.region === 'mask' ? { segment: spec.maskSegment ?? '', pngValue: spec.maskLabel } : undefined;
    const kind = segmentation ? `segmentation:${segmentation.unmaskedImages}` : region ? `region:${JSON.stringify([region.segment.trim().toLowerCase(), region.pngValue ?? null])}` : 'classification';
    const key = `${pipelineHash(shape)}/${classNames.join(',')}/${spec.seed}/${kind}`;
    let prepared = this.prepared.get(key);
    if (!prepared) {
      prepared = segmentation
        ? this.loadSegmentation(spec, classNames, shape, segmentation.unmaskedImages)
        : region
          ? this.loadRegion(spec, classNames, shape, region)
          : this.load(spec, classNames, shape);
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
    return this.split(spec, { ...loaded, cachedTensors: loaded.cache.hits });
  }

  /**
   * A segmentation study's images and their masks (DICOM SEG, RT structure sets or PNG masks anywhere in the data
   * folder), segments matched to the study's classes by name. The dataset summary counts images   * by the segment their mask holds most of (background for an image without any), so each image counts once. A
   * labels CSV kept inside the data folder is neither an image nor a mask and is left out.
   */
  private async loadSegmentation(
    spec: ModelSpec,
    classNames: string[],
    shape: { inputSize: number; channels: ModelSpec['channels']; preprocessing: Preprocessing },
    unmasked: 'reject' | 'background',
  ): Promise<PreparedData> {
    const dataset = await prepareSiteDataset(this.config.data);
    const labels = dataset.labelsCsv !== undefined ? relative(dataset.dir, dataset.labelsCsv) : undefined;
    const exclude = labels !== undefined && !labels.startsWith('..') ? [labels.split(sep).join('/')] : [];
    const loaded = await loadSegmentationDataset({
      dir: dataset.dir,
      files: dataset.files,
      exclude,
      ...shape,
      segments: classNames.slice(1),
      unmasked,
      ...(this.onProgress ? { onProgress: this.onProgress } : {}),
    });
    const pixels = spec.inputSize * spec.inputSize;
    const classCounts = Object.fromEntries(classNames.map((name) => [name, 0]));
    const area = new Uint32Array(classNames.length);
    for (let i = 0; i < loaded.images.count; i++) {
      area.fill(0);
      const mask = loaded.images.masks.subarray(i * pixels, (i + 1) * pixels);
      for (let p = 0; p < pixels; p++) area[mask[p] as number]! += 1;
      let largest = 0;
      for (let c = 1; c < classNames.length; c++) if ((area[c] as number) > (largest === 0 ? 0 : (area[largest] as number))) largest = c;
      const name = classNames[largest] as string;
      classCounts[name] = (classCounts[name] ?? 0) + 1;
    }
    return this.split(spec, { images: loaded.images, rejected: loaded.rejected, files: loaded.files, classCounts, cachedTensors: 0 });
  }

  /**
   * Labelled images with the mask of the structure a linear model looks inside (see loadRegionDataset). Images
   * are decoded every time the agent starts: the tensor cache keeps images without their masks.
   */
  private async loadRegion(
    spec: ModelSpec,
    classNames: string[],
    shape: { inputSize: number; channels: ModelSpec['channels']; preprocessing: Preprocessing },
    region: { segment: string; pngValue: number | undefined },
  ): Promise<PreparedData> {
    const dataset = await prepareSiteDataset(this.config.data);
    const loaded = await loadRegionDataset({
      dir: dataset.dir,
      labelsCsv: dataset.labelsCsv,
      files: dataset.files,
      ...shape,
      classNames,
      segment: region.segment,
      pngValue: region.pngValue,
      ...(this.onProgress ? { onProgress: this.onProgress } : {}),
    });
    return this.split(spec, { ...loaded, cachedTensors: 0 });
  }

  /** Logs what was skipped and splits by patient, the same for every kind of study. */
  private split(
    spec: ModelSpec,
    loaded: { images: LoadedDataset['images']; rejected: RejectedFile[]; files: string[]; classCounts: Record<string, number>; cachedTensors: number },
  ): PreparedData {
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
      { train: split.train.count, validation: split.validation.count, groups, rejected: loaded.rejected.length, classCounts: loaded.classCounts, cachedTensors: loaded.cachedTensors },
      'dataset ready',
    );
    if (this.config.data.validationFraction > 0 && split.validation.count === 0 && loaded.images.count > 1) {
      // Typically an export that gave every image the same Patient ID: the whole site is one "patient".
      this.log.warn({ images: loaded.images.count, groups }, 'no validation images: too few patient groups to hold any out; validation metrics will be missing');
    }
    return { ...split, rejected: loaded.rejected.length, contents: { files: loaded.files, classCounts: loaded.classCounts, rejected: loaded.rejected } };
  }
}
