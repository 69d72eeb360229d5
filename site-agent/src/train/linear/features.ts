/**
 * The feature matrix a linear model trains on: the spec's feature groups extracted from each preprocessed image (or
 * from the pixels inside its mask), put on the fixed scale (features/fixed-scale.ts) that every site shares, then,
 * when the spec carries consortium statistics, standardised with them.
 *
 * Extraction is by far the costliest part of a linear round and the site trains on the same images every round, so
 * the scaled matrices are kept in a small cache keyed by the SHA-256 of the pixels (and masks) and the extraction
 * settings: a later round, or the evaluation of the same split, reuses them; changed pixels never hit a stale entry.
 */
import { createHash } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { canonicalJson, linearFeatureCount, type LinearArchitectureSpec } from '@federa/shared';
import { applyFixedScales, featureMatrix, FeatureInputError, fixedScales, Standardizer, type FeatureOptions } from '../../features/index.js';
import { TrainingDataError } from '../errors.js';
import type { LabeledImages } from '../types.js';

/** Scaled matrices kept; each is rows x features float64 (about 0.4 MB for 1000 single-channel images). */
const CACHE_ENTRIES = 8;
/** Images extracted between two turns of the event loop, so a large set does not stall the agent's connection. */
const IMAGES_PER_TURN = 16;

const cache = new Map<string, Float64Array>();

/** The model's input: rows x columns, row-major, one row per image of the data; `x` may be the cached array: read only. */
export interface LinearInputs {
  x: Float64Array;
  rows: number;
  columns: number;
}

/** What the extraction depends on, besides the pixels: the spec's feature settings. */
function extractionOptions(spec: LinearArchitectureSpec): FeatureOptions {
  return {
    groups: spec.features,
    histogramBins: spec.histogramBins,
    glcmLevels: spec.glcmLevels,
    glcmDistances: spec.glcmDistances,
    edgeThreshold: spec.edgeThreshold,
    // No maskLabel: the site's loader already reduced each mask to the structure (maskSegment, or maskLabel in a
    // PNG mask), so every non-zero pixel is the region.
    // Checked below, so the refusal can speak of the study's options rather than the extractor's.
    undefinedValues: 'nan',
  };
}

/** The scaled (and, with spec.standardize, standardised) features of every image in `data`. */
export async function linearInputs(spec: LinearArchitectureSpec, data: LabeledImages): Promise<LinearInputs> {
  const columns = linearFeatureCount(spec);
  const useMasks = spec.region === 'mask';
  if (useMasks && data.masks === undefined) {
    throw new TrainingDataError(
      `${spec.architecture} with region: 'mask' describes the pixels inside each image's ${spec.maskSegment ?? 'structure'} mask, and this data has no masks; ` +
        "give the site masks of that structure (DICOM SEG, RT Structure Set or PNG beside each image) or use region: 'image'",
    );
  }
  if (useMasks && data.masks!.length !== data.count * data.height * data.width) {
    throw new TrainingDataError(`masks hold ${data.masks!.length} values but ${data.count} images of ${data.height}x${data.width} need ${data.count * data.height * data.width}`);
  }
  const options = extractionOptions(spec);
  const key = cacheKey(spec, data, options, useMasks);
  let scaled = cache.get(key);
  if (scaled === undefined) {
    scaled = await extractScaled(spec, data, options, useMasks, columns);
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  } else {
    // Least recently used goes first: re-inserting moves this entry to the end.
    cache.delete(key);
  }
  cache.set(key, scaled);
  const x = spec.standardize === undefined ? scaled : new Standardizer(spec.standardize.mean, spec.standardize.std).transform(scaled);
  return { x, rows: data.count, columns };
}

/** Drops every cached matrix (tests, and callers that know their images are gone for good). */
export function clearLinearFeatureCache(): void {
  cache.clear();
}

async function extractScaled(spec: LinearArchitectureSpec, data: LabeledImages, options: FeatureOptions, useMasks: boolean, columns: number): Promise<Float64Array> {
  const { count, height, width, channels } = data;
  const pixels = height * width;
  const raw = new Float64Array(count * columns);
  let names: string[] = [];
  for (let start = 0; start < count; start += IMAGES_PER_TURN) {
    const end = Math.min(count, start + IMAGES_PER_TURN);
    const part: LabeledImages = { images: data.images.subarray(start * pixels * channels, end * pixels * channels), labels: data.labels.subarray(start, end), count: end - start, height, width, channels };
    const masks = useMasks ? Array.from({ length: end - start }, (_, i) => data.masks!.subarray((start + i) * pixels, (start + i + 1) * pixels)) : undefined;
    let matrix;
    try {
      matrix = featureMatrix(part, masks, options);
    } catch (error) {
      if (!(error instanceof FeatureInputError)) throw error;
      // The extractor numbers images within the part; the site's IT needs the index in the whole set.
      const message = error.message.replace(/^image (\d+)/, (_, n: string) => `image ${start + Number(n)}`);
      throw new TrainingDataError(`${spec.architecture} features (region: '${spec.region}'): ${message}`);
    }
    if (matrix.columns !== columns) {
      throw new Error(`the extractor gave ${matrix.columns} features for ${spec.features.join(', ')} x ${channels} channel(s), the model registry ${columns}`);
    }
    names = matrix.names;
    for (let i = 0; i < matrix.values.length; i++) {
      if (Number.isNaN(matrix.values[i])) {
        const image = start + Math.floor(i / columns);
        const undefinedNames = matrix.names.filter((_, c) => Number.isNaN(matrix.values[(image - start) * columns + c]));
        throw new TrainingDataError(
          `${spec.architecture} features: image ${image}'s mask region is too small to define ${undefinedNames.slice(0, 4).join(', ')}` +
            `${undefinedNames.length > 4 ? ` and ${undefinedNames.length - 4} more` : ''}; give it a larger mask or use region: 'image'`,
        );
      }
    }
    raw.set(matrix.values, start * columns);
    await yieldToEventLoop();
  }
  return applyFixedScales(raw, fixedScales(names, { pixels, histogramBins: spec.histogramBins, glcmLevels: spec.glcmLevels }));
}

function cacheKey(spec: LinearArchitectureSpec, data: LabeledImages, options: FeatureOptions, useMasks: boolean): string {
  const hash = createHash('sha256');
  const { images } = data;
  hash.update(new Uint8Array(images.buffer, images.byteOffset, images.byteLength));
  if (useMasks) hash.update('\0masks\0').update(data.masks!);
  const settings = canonicalJson({ options, region: spec.region, shape: [data.count, data.height, data.width, data.channels] });
  return `${hash.digest('hex')}/${settings}`;
}
