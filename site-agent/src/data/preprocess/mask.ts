import { DEFAULT_PREPROCESSING, type Preprocessing } from '@federa/shared';
import { planGeometry } from './spatial.js';

/** A label mask on its image's grid (rows x columns, row-major), as the masks readers return it. */
export interface MaskGrid {
  readonly rows: number;
  readonly columns: number;
  readonly labels: Uint8Array;
}

export interface PreprocessMaskOptions {
  readonly inputSize: number;
  /** The study's pipeline; only its spatial steps (cropFraction, resize) apply to masks. */
  readonly preprocessing?: Preprocessing | undefined;
}

/** Source index of each output index along one axis: the pixel whose centre is nearest the output centre. */
function nearestIndices(from: number, length: number, to: number): Int32Array {
  const out = new Int32Array(to);
  // (j + 0.5) * length / to in integers, so no rounding error can move a tie; pixel centres as the image resize has them.
  for (let j = 0; j < to; j++) out[j] = from + Math.min(length - 1, Math.floor(((2 * j + 1) * length) / (2 * to)));
  return out;
}

/**
 * A label mask through the image pipeline's spatial steps (crop, resize, letterbox placement), so output pixel
 * (y, x) labels image pixel (y, x) of preprocessImage's output for an image of the same size. Labels are
 * sampled by nearest neighbour, never interpolated (a blend of class indices is no class); letterbox padding is
 * background (0). Intensity steps (window, denoise, normalise) do not apply to masks.
 */
export function preprocessMask(mask: MaskGrid, options: PreprocessMaskOptions): Uint8Array {
  const size = options.inputSize;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`inputSize must be a positive integer, got ${size}`);
  const { rows, columns, labels } = mask;
  if (labels.length !== rows * columns) throw new RangeError(`mask holds ${labels.length} labels for ${rows} x ${columns} pixels`);
  // The same plan preprocessImage makes, so crop and letterbox offsets match the image's to the pixel.
  const geometry = planGeometry(columns, rows, size, options.preprocessing ?? DEFAULT_PREPROCESSING);
  const { crop, target, offset } = geometry;
  const xs = nearestIndices(crop.left, crop.width, target.width);
  const ys = nearestIndices(crop.top, crop.height, target.height);
  const out = new Uint8Array(size * size);
  for (let y = 0; y < target.height; y++) {
    const from = (ys[y] ?? 0) * columns;
    const to = (offset.top + y) * size + offset.left;
    for (let x = 0; x < target.width; x++) out[to + x] = labels[from + (xs[x] ?? 0)] ?? 0;
  }
  return out;
}
