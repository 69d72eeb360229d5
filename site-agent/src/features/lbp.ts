/**
 * Local binary patterns with P = 8 neighbours at radius R = 1, uniform and rotation invariant ("riu2", Ojala et al.
 * 2002), computed as scikit-image's local_binary_pattern(image, 8, 1, method='uniform')
 * (_texture.pyx): neighbour p sits at (-sin(2πp/8), cos(2πp/8)) rounded to 5 decimals, diagonal neighbours are
 * bilinearly interpolated, a neighbour sets its bit when neighbour - centre >= 0, and a pattern with at most two
 * 0/1 transitions gets its number of set bits (0..8) while every other pattern gets 9: P + 2 = 10 codes.
 * One deviation: a neighbour within 1e-10·max(1, |centre|) below the centre counts as equal. scikit-image compares
 * exactly, and its interpolation of a flat area, (1 - d)·v + d·v, often falls one rounding step below v (for some
 * values at every pixel), which turns flat pixels into "non-uniform" ones (the float warning in its documentation).
 *
 * The histogram counts only pixels of the region whose 3x3 neighbourhood lies inside the image (where scikit-image
 * would read its zero padding), normalised to sum 1; neighbours may lie outside the region, as when pyradiomics
 * filters the whole image before masking. With no such pixel every bin is NaN.
 */
import { checkPlane, isInterior, inRegion, type Plane, type Region } from './region.js';

const P = 8;
const R = 1;
export const LBP_BINS = P + 2;
export const LBP_FEATURES: readonly string[] = Array.from({ length: LBP_BINS }, (_, k) => `riu2_${k}`);

// scikit-image rounds the sample positions to 5 decimals (np.round), which gives ±0.70711 on the diagonals.
const round5 = (x: number): number => Math.round(x * 1e5) / 1e5;
const ROW_OFFSETS = Array.from({ length: P }, (_, p) => round5(-R * Math.sin((2 * Math.PI * p) / P)));
const COL_OFFSETS = Array.from({ length: P }, (_, p) => round5(R * Math.cos((2 * Math.PI * p) / P)));
/** Relative slack below the centre that still counts as a tie (see the deviation above). */
const TIE_TOLERANCE = 1e-10;

/** riu2 code (0..9) of every pixel, reading 0 outside the image as scikit-image's mode 'C' does. */
export function lbpCodes(plane: Plane): Uint8Array {
  checkPlane(plane, null);
  const { pixels, height, width } = plane;
  const at = (r: number, c: number): number => (r < 0 || c < 0 || r >= height || c >= width ? 0 : pixels[r * width + c]!);
  const codes = new Uint8Array(height * width);
  const bits = new Uint8Array(P);
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      const centre = pixels[r * width + c]!;
      const tolerance = TIE_TOLERANCE * Math.max(1, Math.abs(centre));
      for (let p = 0; p < P; p++) {
        // Same operations in the same order as scikit-image's bilinear_interpolation, so ties resolve alike.
        const rr = r + ROW_OFFSETS[p]!;
        const cc = c + COL_OFFSETS[p]!;
        const minR = Math.floor(rr);
        const minC = Math.floor(cc);
        const maxR = Math.ceil(rr);
        const maxC = Math.ceil(cc);
        const dr = rr - minR;
        const dc = cc - minC;
        const top = (1 - dc) * at(minR, minC) + dc * at(minR, maxC);
        const bottom = (1 - dc) * at(maxR, minC) + dc * at(maxR, maxC);
        bits[p] = (1 - dr) * top + dr * bottom - centre >= -tolerance ? 1 : 0;
      }
      let changes = 0;
      let ones = 0;
      for (let p = 0; p < P; p++) {
        ones += bits[p]!;
        if (p < P - 1 && bits[p] !== bits[p + 1]) changes++;
      }
      // scikit-image counts transitions without the wrap-around pair; for "at most 2" that is the same test.
      codes[r * width + c] = changes <= 2 ? ones : P + 1;
    }
  }
  return codes;
}

/** Normalised histogram of the riu2 codes over the region's interior pixels (LBP_BINS values). */
export function lbpFeatures(plane: Plane, region: Region): Float64Array {
  checkPlane(plane, region);
  const codes = lbpCodes(plane);
  const histogram = new Float64Array(LBP_BINS);
  let counted = 0;
  for (let r = 0; r < plane.height; r++) {
    for (let c = 0; c < plane.width; c++) {
      const i = r * plane.width + c;
      if (!isInterior(plane.height, plane.width, r, c) || !inRegion(region, i)) continue;
      histogram[codes[i]!]! += 1;
      counted++;
    }
  }
  if (counted === 0) return histogram.fill(Number.NaN);
  for (let k = 0; k < LBP_BINS; k++) histogram[k]! /= counted;
  return histogram;
}
