import type { Preprocessing } from '@federa/shared';
import { clahePlane, type Plane } from './spatial.js';

const UINT16_MAX = 65535;

/** Stretches to [0, 1]; a constant image carries no contrast and becomes zeros rather than NaN. */
export function minMax(data: Float32Array): Float32Array {
  let min = Infinity;
  let max = -Infinity;
  for (const v of data) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const span = max - min;
  const out = new Float32Array(data.length);
  if (span > 0) for (let i = 0; i < out.length; i++) out[i] = ((data[i] ?? 0) - min) / span;
  return out;
}

/** Mean 0 and (population) standard deviation 1 over the image; a constant image becomes zeros. */
export function zScore(data: Float32Array): Float32Array {
  let sum = 0;
  for (const v of data) sum += v;
  const mean = data.length > 0 ? sum / data.length : 0;
  let squares = 0;
  for (const v of data) squares += (v - mean) ** 2;
  const std = data.length > 0 ? Math.sqrt(squares / data.length) : 0;
  const out = new Float32Array(data.length);
  // Below float32 resolution of [0, 1] data the "contrast" is rounding noise; amplifying it would be meaningless.
  if (std > 1e-7) for (let i = 0; i < out.length; i++) out[i] = ((data[i] ?? 0) - mean) / std;
  return out;
}

/**
 * Global histogram equalisation over 65536 levels (sharp has no global equalisation: normalise() is a
 * percentile stretch). Classic mapping (cdf(v) - cdf_min) / (n - cdf_min): the darkest level maps to 0 and the
 * brightest to 1, and levels in between spread by how many pixels lie below them.
 */
export function equaliseHistogram(data: Float32Array): Float32Array {
  const levels = new Uint16Array(data.length);
  const histogram = new Uint32Array(UINT16_MAX + 1);
  for (let i = 0; i < data.length; i++) {
    const level = Math.round(Math.min(1, Math.max(0, data[i] ?? 0)) * UINT16_MAX);
    levels[i] = level;
    histogram[level] = (histogram[level] ?? 0) + 1;
  }
  const cdf = new Float64Array(UINT16_MAX + 1);
  let running = 0;
  let cdfMin = 0;
  for (let level = 0; level <= UINT16_MAX; level++) {
    running += histogram[level] ?? 0;
    cdf[level] = running;
    if (cdfMin === 0 && running > 0) cdfMin = running;
  }
  const out = new Float32Array(data.length);
  const spread = data.length - cdfMin;
  if (spread > 0) for (let i = 0; i < out.length; i++) out[i] = ((cdf[levels[i] ?? 0] ?? 0) - cdfMin) / spread;
  return out;
}

/** Contrast normalisation of one plane of the resized image (its padding excluded). */
export async function normalisePlane(plane: Plane, normalise: Preprocessing['normalise']): Promise<Plane> {
  if (typeof normalise === 'object') return clahePlane(plane, normalise.clahe.tiles, normalise.clahe.maxSlope);
  switch (normalise) {
    case 'unit':
      return plane;
    case 'min-max':
      return { ...plane, data: minMax(plane.data) };
    case 'z-score':
      return { ...plane, data: zScore(plane.data) };
    case 'histogram-equalisation':
      return { ...plane, data: equaliseHistogram(plane.data) };
  }
}
