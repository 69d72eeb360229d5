/**
 * Hand-crafted feature vectors for images: per channel, in this fixed order,
 *   firstorder_<FIRST_ORDER_FEATURES>, edges_<EDGE_FEATURES>, glcm_<GLCM_FEATURES>, lbp_<LBP_FEATURES>
 * (19 + 6 + 12 + 10 = 47 values a channel; the `groups` option keeps only some families, in the same order).
 * Multi-channel images repeat the block per channel with names prefixed `c<k>_` (c0_firstorder_mean, ...);
 * single-channel names carry no prefix. `featureNames` gives the names without any data, so the consortium can agree
 * on a model's shape up front (the shared model registry's FEATURE_GROUP_SIZES holds the same counts).
 *
 * Undefined values: a mask that selects no pixel is an error. A region too small for some features makes them NaN
 * (edges and LBP: no region pixel whose 3x3 neighbourhood lies inside the image; GLCM: no pixel pair inside the
 * region; robust MAD: only two distinct values); with `undefinedValues: 'error'` (the default) such an image is
 * refused with the features named, with 'nan' the NaNs are returned for the caller to impute or drop.
 *
 * Pixels must be finite; they are expected in [0, 1]. Values outside are used as they are by the first-order and
 * gradient statistics and fall into the end bins of the histogram and GLCM quantisation.
 */
import { FEATURE_GROUPS, type FeatureGroup } from '@federa/shared';
import { z } from 'zod';
import type { LabeledImages } from '../data/index.js';
import { EDGE_FEATURES, edgeFeatures } from './edges.js';
import { FIRST_ORDER_FEATURES, firstOrderFeatures } from './first-order.js';
import { GLCM_FEATURES, glcmFeatures } from './glcm.js';
import { LBP_FEATURES, lbpFeatures } from './lbp.js';
import { FeatureInputError, type Plane } from './region.js';

const edgeThresholdSchema = z.union([
  z.object({ relative: z.number().min(0).max(1) }).strict(),
  z.object({ absolute: z.number().min(0) }).strict(),
]);

/** Feature settings, as a study definition would carry them; every field has a default. */
export const featureOptionsSchema = z
  .object({
    /** Bins of the [0, 1] histogram behind first-order entropy and uniformity. */
    histogramBins: z.number().int().min(2).max(4096).default(32),
    /** Grey levels the GLCM quantises [0, 1] into. */
    glcmLevels: z.number().int().min(2).max(256).default(16),
    /** GLCM pixel distances; the features average over all distances and the 4 angles. */
    glcmDistances: z.array(z.number().int().min(1).max(64)).min(1).max(8).default(() => [1]),
    /** Edge density threshold, relative to the region's largest gradient or absolute (grey levels per pixel). */
    edgeThreshold: edgeThresholdSchema.default(() => ({ relative: 0.25 })),
    /** Mask value that marks the region; omitted: every non-zero mask pixel. */
    maskLabel: z.number().int().min(1).max(255).optional(),
    /** What to do with values a too-small region leaves undefined (NaN): refuse the image, or return the NaNs. */
    undefinedValues: z.enum(['error', 'nan']).default('error'),
    /** Feature families to compute, kept in the fixed order whatever order they are listed in; omitted: all four. */
    groups: z
      .array(z.enum(FEATURE_GROUPS))
      .min(1)
      .refine((groups) => new Set(groups).size === groups.length, 'lists a group twice')
      .optional(),
  })
  .strict();

export type FeatureOptions = z.input<typeof featureOptionsSchema>;
export type ResolvedFeatureOptions = z.output<typeof featureOptionsSchema>;

/** One image, row-major [height, width, channels] (channels interleaved), as in LabeledImages. */
export interface FeatureImage {
  pixels: Float32Array | Float64Array;
  height: number;
  width: number;
  channels: number;
}

export interface FeatureVector {
  names: string[];
  values: Float64Array;
}

/** Features of a whole dataset: row r is image r, row-major rows x columns. */
export interface FeatureMatrix {
  names: string[];
  values: Float64Array;
  rows: number;
  columns: number;
  /** The images' labels, in row order. */
  labels: Int32Array;
}

/** Validates options from outside (a study definition) and fills in the defaults. */
export function parseFeatureOptions(input: unknown): ResolvedFeatureOptions {
  const parsed = featureOptionsSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`);
    throw new FeatureInputError(`feature options are invalid: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** Each group's name prefix and feature list, in the fixed order. */
const FAMILIES: ReadonlyArray<readonly [FeatureGroup, string, readonly string[]]> = [
  ['first-order', 'firstorder', FIRST_ORDER_FEATURES],
  ['edges', 'edges', EDGE_FEATURES],
  ['glcm', 'glcm', GLCM_FEATURES],
  ['lbp', 'lbp', LBP_FEATURES],
];

/**
 * Names of the values extractFeatures returns for images with `channels` channels, in order; `groups` (omitted: all)
 * keeps only those families.
 */
export function featureNames(channels: number, groups?: readonly FeatureGroup[]): string[] {
  if (!Number.isInteger(channels) || channels < 1) throw new FeatureInputError(`channels must be an integer >= 1, got ${channels}`);
  const names: string[] = [];
  for (let k = 0; k < channels; k++) {
    const prefix = channels > 1 ? `c${k}_` : '';
    for (const [group, family, features] of FAMILIES) {
      if (groups === undefined || groups.includes(group)) for (const f of features) names.push(`${prefix}${family}_${f}`);
    }
  }
  return names;
}

/** Feature vector of one image inside `mask` (height x width label map, 0 background) or, with null, all of it. */
export function extractFeatures(image: FeatureImage, mask: Uint8Array | null, options: FeatureOptions = {}): FeatureVector {
  const resolved = parseFeatureOptions(options);
  checkImage(image, 'image');
  const names = featureNames(image.channels, resolved.groups);
  return { names, values: extractChecked(image, mask, resolved, names, 'image') };
}

/**
 * Feature matrix of a dataset. `masks[i]` is image i's mask (null: the whole image); omitted: whole images. Errors
 * name the image index.
 */
export function featureMatrix(data: LabeledImages, masks?: ReadonlyArray<Uint8Array | null>, options: FeatureOptions = {}): FeatureMatrix {
  const resolved = parseFeatureOptions(options);
  const { count, height, width, channels } = data;
  if (!Number.isInteger(count) || count < 0) throw new FeatureInputError(`dataset count must be an integer >= 0, got ${count}`);
  const size = height * width * channels;
  if (data.images.length !== count * size) {
    throw new FeatureInputError(`dataset holds ${data.images.length} values, expected ${count} images x ${height}x${width}x${channels}`);
  }
  if (data.labels.length !== count) throw new FeatureInputError(`dataset has ${data.labels.length} labels for ${count} images`);
  if (masks !== undefined && masks.length !== count) throw new FeatureInputError(`got ${masks.length} masks for ${count} images`);
  const names = featureNames(channels, resolved.groups);
  const values = new Float64Array(count * names.length);
  for (let n = 0; n < count; n++) {
    const image: FeatureImage = { pixels: data.images.subarray(n * size, (n + 1) * size), height, width, channels };
    checkImage(image, `image ${n}`);
    values.set(extractChecked(image, masks?.[n] ?? null, resolved, names, `image ${n}`), n * names.length);
  }
  return { names, values, rows: count, columns: names.length, labels: Int32Array.from(data.labels) };
}

function checkImage(image: FeatureImage, where: string): void {
  const { height, width, channels, pixels } = image;
  for (const [what, v] of [
    ['height', height],
    ['width', width],
    ['channels', channels],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new FeatureInputError(`${where}: ${what} must be an integer >= 1, got ${v}`);
  }
  if (pixels.length !== height * width * channels) {
    throw new FeatureInputError(`${where} has ${pixels.length} values, expected ${height}x${width}x${channels} = ${height * width * channels}`);
  }
  for (let i = 0; i < pixels.length; i++) {
    if (!Number.isFinite(pixels[i])) {
      const pixel = Math.floor(i / channels);
      throw new FeatureInputError(
        `${where}: pixel (row ${Math.floor(pixel / width)}, column ${pixel % width}) channel ${i % channels} is ${pixels[i]}, not a finite number`,
      );
    }
  }
}

function extractChecked(image: FeatureImage, mask: Uint8Array | null, options: ResolvedFeatureOptions, names: string[], where: string): Float64Array {
  const { height, width, channels } = image;
  const region = regionOf(mask, options.maskLabel, height * width, where);
  const perChannel = names.length / channels;
  const out = new Float64Array(names.length);
  for (let k = 0; k < channels; k++) {
    const plane: Plane = { pixels: channelPlane(image, k), height, width };
    let at = k * perChannel;
    const wanted = (group: FeatureGroup): boolean => options.groups === undefined || options.groups.includes(group);
    // Only the families asked for are computed: GLCM and LBP cost the most, and a model may not use them.
    for (const part of [
      wanted('first-order') ? firstOrderFeatures(plane, region, { histogramBins: options.histogramBins }) : null,
      wanted('edges') ? edgeFeatures(plane, region, { edgeThreshold: options.edgeThreshold }) : null,
      wanted('glcm') ? glcmFeatures(plane, region, { levels: options.glcmLevels, distances: options.glcmDistances }) : null,
      wanted('lbp') ? lbpFeatures(plane, region) : null,
    ]) {
      if (part === null) continue;
      out.set(part, at);
      at += part.length;
    }
  }
  if (options.undefinedValues === 'error') {
    const undefinedNames = names.filter((_, i) => Number.isNaN(out[i]));
    if (undefinedNames.length > 0) {
      const shown = undefinedNames.slice(0, 6).join(', ') + (undefinedNames.length > 6 ? `, ... (${undefinedNames.length} in all)` : '');
      throw new FeatureInputError(`${where}: the region is too small to define ${shown}; enlarge the mask or set undefinedValues: 'nan'`);
    }
  }
  return out;
}

/** The mask as a 0/1 region (null for the whole image); refuses a wrong size or a mask that selects nothing. */
function regionOf(mask: Uint8Array | null, label: number | undefined, pixels: number, where: string): Uint8Array | null {
  if (mask === null) return null;
  if (mask.length !== pixels) throw new FeatureInputError(`${where}: mask has ${mask.length} pixels, expected ${pixels}`);
  const region = new Uint8Array(pixels);
  let selected = 0;
  for (let i = 0; i < pixels; i++) {
    const inside = label === undefined ? mask[i] !== 0 : mask[i] === label;
    if (inside) {
      region[i] = 1;
      selected++;
    }
  }
  if (selected === 0) {
    throw new FeatureInputError(`${where}: the mask selects no pixel${label === undefined ? '' : ` with label ${label}`}; there is nothing to describe`);
  }
  return region;
}

function channelPlane(image: FeatureImage, channel: number): Float32Array | Float64Array {
  if (image.channels === 1) return image.pixels;
  const plane = new Float64Array(image.height * image.width);
  for (let i = 0; i < plane.length; i++) plane[i] = image.pixels[i * image.channels + channel]!;
  return plane;
}
