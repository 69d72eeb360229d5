/**
 * Grey-level co-occurrence (GLCM) texture, as pyradiomics computes it in 2D (radiomics/glcm.py, force2D):
 * - grey values are quantised into `levels` fixed bins over [0, 1] (see quantize) and numbered 1..levels;
 * - for each distance d and the 4 angles 0, 45, 90 and 135 degrees (row/column offsets (0, d), (-d, d), (-d, 0),
 *   (-d, -d): the infinity-norm neighbours, as pyradiomics generates them), a pair counts only when both pixels are
 *   in the region, and is counted both ways (symmetric matrix, pyradiomics' default and Haralick's definition);
 * - each matrix is normalised to sum 1, each feature is computed per matrix and averaged over the matrices that
 *   hold at least one pair (pyradiomics drops empty angles); with no pair at all every feature is NaN.
 * scikit-image's graycomatrix offsets (round(sin θ·d), round(cos θ·d)) swap the 45 and 135 degree matrices
 * relative to these (and at d >= 2 shorten its diagonals), which the average over angles hides at d = 1.
 *
 * Features (p = normalised matrix, i, j = 1..levels, mu/sigma of the marginals):
 *   contrast Σ(i-j)²p; dissimilarity Σ|i-j|p (pyradiomics' difference average); homogeneity Σp/(1+(i-j)²)
 *   (scikit-image's homogeneity, pyradiomics' IDM); inverse_difference Σp/(1+|i-j|) (pyradiomics ID);
 *   asm Σp² (IBSI angular second moment, pyradiomics joint energy); energy sqrt(asm) (scikit-image);
 *   correlation Σp(i-mu_x)(j-mu_y)/(sigma_x·sigma_y), 1 when a sigma is 0 (both libraries' flat-region value);
 *   entropy -Σp·log2 p (pyradiomics joint entropy; scikit-image uses ln); cluster_shade Σ(i+j-mu_x-mu_y)³p;
 *   cluster_prominence Σ(i+j-mu_x-mu_y)⁴p; autocorrelation Σ i·j·p (depends on the 1-based numbering);
 *   max_probability max p.
 */
import { checkPlane, FeatureInputError, quantize, type Plane, type Region } from './region.js';

export const GLCM_FEATURES = [
  'contrast',
  'dissimilarity',
  'homogeneity',
  'inverse_difference',
  'asm',
  'energy',
  'correlation',
  'entropy',
  'cluster_shade',
  'cluster_prominence',
  'autocorrelation',
  'max_probability',
] as const;

export const DEFAULT_GLCM_LEVELS = 16;
export const DEFAULT_GLCM_DISTANCES: readonly number[] = [1];

export interface GlcmOptions {
  /** Grey levels after quantisation (integer in [2, 256]); default 16. */
  levels?: number;
  /** Pixel distances (integers >= 1); default [1]. */
  distances?: readonly number[];
}

/** Row and column offsets of the 0, 45, 90 and 135 degree neighbours at distance d. */
export function glcmOffsets(d: number): Array<readonly [number, number]> {
  return [
    [0, d],
    [-d, d],
    [-d, 0],
    [-d, -d],
  ];
}

/**
 * Symmetric co-occurrence counts, one levels x levels row-major matrix per (distance, angle) in that order.
 * `levelImage` holds 0-based grey levels in [0, levels).
 */
export function glcmMatrices(
  levelImage: ArrayLike<number>,
  height: number,
  width: number,
  region: Region,
  levels: number,
  distances: readonly number[] = DEFAULT_GLCM_DISTANCES,
): Float64Array[] {
  checkPlane({ pixels: levelImage, height, width }, region, 'grey-level image');
  checkGlcmOptions(levels, distances);
  const matrices: Float64Array[] = [];
  for (const d of distances) {
    for (const [dr, dc] of glcmOffsets(d)) {
      const counts = new Float64Array(levels * levels);
      for (let r = Math.max(0, -dr); r < Math.min(height, height - dr); r++) {
        for (let c = Math.max(0, -dc); c < Math.min(width, width - dc); c++) {
          const a = r * width + c;
          const b = (r + dr) * width + (c + dc);
          if (region !== null && (region[a] === 0 || region[b] === 0)) continue;
          const i = levelImage[a]!;
          const j = levelImage[b]!;
          if (!(Number.isInteger(i) && Number.isInteger(j) && i >= 0 && j >= 0 && i < levels && j < levels)) {
            throw new FeatureInputError(`grey levels ${i} and ${j} at pixels ${a} and ${b} are not both integers in [0, ${levels})`);
          }
          counts[i * levels + j]! += 1;
          counts[j * levels + i]! += 1;
        }
      }
      matrices.push(counts);
    }
  }
  return matrices;
}

/** Features of one count matrix in GLCM_FEATURES order, or null when it holds no pair. */
export function glcmMatrixFeatures(counts: Float64Array, levels: number): Float64Array | null {
  let total = 0;
  for (const v of counts) total += v;
  if (total === 0) return null;
  let muX = 0;
  let muY = 0;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < levels; j++) {
      const p = counts[i * levels + j]! / total;
      muX += (i + 1) * p;
      muY += (j + 1) * p;
    }
  }
  let varX = 0;
  let varY = 0;
  let cov = 0;
  let contrast = 0;
  let dissimilarity = 0;
  let homogeneity = 0;
  let inverseDifference = 0;
  let asm = 0;
  let entropy = 0;
  let shade = 0;
  let prominence = 0;
  let autocorrelation = 0;
  let maxProbability = 0;
  for (let i = 1; i <= levels; i++) {
    for (let j = 1; j <= levels; j++) {
      const p = counts[(i - 1) * levels + (j - 1)]! / total;
      if (p === 0) continue;
      const diff = i - j;
      const cluster = i + j - muX - muY;
      varX += p * (i - muX) ** 2;
      varY += p * (j - muY) ** 2;
      cov += p * (i - muX) * (j - muY);
      contrast += p * diff * diff;
      dissimilarity += p * Math.abs(diff);
      homogeneity += p / (1 + diff * diff);
      inverseDifference += p / (1 + Math.abs(diff));
      asm += p * p;
      entropy -= p * Math.log2(p);
      shade += p * cluster ** 3;
      prominence += p * cluster ** 4;
      autocorrelation += p * i * j;
      if (p > maxProbability) maxProbability = p;
    }
  }
  const sigmas = Math.sqrt(varX) * Math.sqrt(varY);
  const correlation = sigmas < 1e-15 ? 1 : cov / sigmas;
  return Float64Array.of(
    contrast,
    dissimilarity,
    homogeneity,
    inverseDifference,
    asm,
    Math.sqrt(asm),
    correlation,
    entropy,
    shade,
    prominence,
    autocorrelation,
    maxProbability,
  );
}

/** Angle-averaged GLCM features of a plane's region in GLCM_FEATURES order (all NaN when no pair lies inside). */
export function glcmFeatures(plane: Plane, region: Region, options: GlcmOptions = {}): Float64Array {
  checkPlane(plane, region);
  const levels = options.levels ?? DEFAULT_GLCM_LEVELS;
  const distances = options.distances ?? DEFAULT_GLCM_DISTANCES;
  checkGlcmOptions(levels, distances);
  const levelImage = new Int32Array(plane.height * plane.width);
  for (let i = 0; i < levelImage.length; i++) levelImage[i] = quantize(plane.pixels[i]!, levels);
  const out = new Float64Array(GLCM_FEATURES.length);
  let used = 0;
  for (const counts of glcmMatrices(levelImage, plane.height, plane.width, region, levels, distances)) {
    const features = glcmMatrixFeatures(counts, levels);
    if (features === null) continue;
    for (let k = 0; k < out.length; k++) out[k]! += features[k]!;
    used++;
  }
  if (used === 0) return out.fill(Number.NaN);
  for (let k = 0; k < out.length; k++) out[k]! /= used;
  return out;
}

function checkGlcmOptions(levels: number, distances: readonly number[]): void {
  if (!Number.isInteger(levels) || levels < 2 || levels > 256) throw new FeatureInputError(`GLCM levels must be an integer in [2, 256], got ${levels}`);
  if (distances.length === 0 || distances.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new FeatureInputError(`GLCM distances must be a non-empty list of integers >= 1, got [${distances.join(', ')}]`);
  }
}
