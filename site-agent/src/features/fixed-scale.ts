/**
 * A fixed, data-independent scale for every feature, so that a linear model's weights mean the same at every site.
 * Standardising on a site's own data would not do: each site would divide by its own spread, and FedAvg would
 * average weights that multiply differently scaled inputs. Instead each feature's known range, for pixels in [0, 1]
 * (the preprocessed range), is mapped linearly onto [-1, 1]:
 *
 *   linear [lo, hi]:  s = 2·(x - lo) / (hi - lo) - 1
 *   log [lo, hi]:     the same on u(x) = sign(x)·ln(1 + |x|), for features whose range spans orders of magnitude
 *                     more than their usual values (counts, sums, higher moments, GLCM contrast and cluster terms)
 *
 * The ranges (n = pixels in the image, B = histogram bins, L = GLCM levels, levels numbered 1..L):
 *   first-order: count log [0, n]; mean, min, max, median, p10, p90, iqr, range, rms, uniformity linear [0, 1];
 *     variance [0, 1/4]; std, mad, robust_mad [0, 1/2]; skewness log [-sqrt(n), sqrt(n)]; excess_kurtosis log
 *     [-2, n]; energy log [0, n]; entropy [0, log2 B]
 *   edges: gradient_mean, _std, _median, _p90, _max [0, sqrt(1/2)] (the scaled Sobel magnitude's range); density [0, 1]
 *   glcm: contrast log [0, (L-1)²]; dissimilarity [0, L-1]; homogeneity, inverse_difference, asm, energy,
 *     max_probability [0, 1]; correlation [-1, 1]; entropy [0, 2·log2 L]; cluster_shade log ±(2(L-1))³;
 *     cluster_prominence log [0, (2(L-1))⁴]; autocorrelation log [1, L²]
 *   lbp: every bin [0, 1]
 * Values are not clipped: pixels outside [0, 1] (z-score preprocessing) give values outside [-1, 1], still the same
 * function at every site. A consortium z-score from federated statistics can be applied on top (Standardizer).
 */
import { FeatureInputError } from './region.js';

/** How one feature is scaled: see the module comment. */
export interface FeatureScale {
  kind: 'linear' | 'log';
  lo: number;
  hi: number;
}

/** What the ranges depend on: the image's pixel count and the extraction settings. */
export interface ScaleContext {
  pixels: number;
  histogramBins: number;
  glcmLevels: number;
}

const UNIT: FeatureScale = { kind: 'linear', lo: 0, hi: 1 };
const linear = (lo: number, hi: number): FeatureScale => ({ kind: 'linear', lo, hi });
const log = (lo: number, hi: number): FeatureScale => ({ kind: 'log', lo, hi });

/** The scale of each feature, keyed by its name without a channel prefix (`glcm_contrast`). */
function scaleTable({ pixels: n, histogramBins: bins, glcmLevels: levels }: ScaleContext): ReadonlyMap<string, FeatureScale> {
  const gradient = linear(0, Math.SQRT1_2);
  const span = 2 * (levels - 1);
  const entries: Array<[string, FeatureScale]> = [
    ['firstorder_count', log(0, n)],
    ['firstorder_mean', UNIT],
    ['firstorder_variance', linear(0, 0.25)],
    ['firstorder_std', linear(0, 0.5)],
    ['firstorder_skewness', log(-Math.sqrt(n), Math.sqrt(n))],
    ['firstorder_excess_kurtosis', log(-2, n)],
    ['firstorder_min', UNIT],
    ['firstorder_max', UNIT],
    ['firstorder_median', UNIT],
    ['firstorder_p10', UNIT],
    ['firstorder_p90', UNIT],
    ['firstorder_iqr', UNIT],
    ['firstorder_range', UNIT],
    ['firstorder_mad', linear(0, 0.5)],
    ['firstorder_robust_mad', linear(0, 0.5)],
    ['firstorder_energy', log(0, n)],
    ['firstorder_rms', UNIT],
    ['firstorder_entropy', linear(0, Math.log2(bins))],
    ['firstorder_uniformity', UNIT],
    ['edges_gradient_mean', gradient],
    ['edges_gradient_std', gradient],
    ['edges_gradient_median', gradient],
    ['edges_gradient_p90', gradient],
    ['edges_gradient_max', gradient],
    ['edges_density', UNIT],
    ['glcm_contrast', log(0, (levels - 1) ** 2)],
    ['glcm_dissimilarity', linear(0, levels - 1)],
    ['glcm_homogeneity', UNIT],
    ['glcm_inverse_difference', UNIT],
    ['glcm_asm', UNIT],
    ['glcm_energy', UNIT],
    ['glcm_correlation', linear(-1, 1)],
    ['glcm_entropy', linear(0, 2 * Math.log2(levels))],
    ['glcm_cluster_shade', log(-(span ** 3), span ** 3)],
    ['glcm_cluster_prominence', log(0, span ** 4)],
    ['glcm_autocorrelation', log(1, levels * levels)],
    ['glcm_max_probability', UNIT],
  ];
  for (let k = 0; k < 10; k++) entries.push([`lbp_riu2_${k}`, UNIT]);
  return new Map(entries);
}

const signedLog = (x: number): number => Math.sign(x) * Math.log1p(Math.abs(x));

/** The fixed scales of the named features (names as featureNames gives them, with or without channel prefixes). */
export function fixedScales(names: readonly string[], context: ScaleContext): FeatureScale[] {
  const { pixels, histogramBins, glcmLevels } = context;
  if (!Number.isInteger(pixels) || pixels < 1) throw new FeatureInputError(`pixels must be an integer >= 1, got ${pixels}`);
  if (!Number.isInteger(histogramBins) || histogramBins < 2) throw new FeatureInputError(`histogramBins must be an integer >= 2, got ${histogramBins}`);
  if (!Number.isInteger(glcmLevels) || glcmLevels < 2) throw new FeatureInputError(`glcmLevels must be an integer >= 2, got ${glcmLevels}`);
  const table = scaleTable(context);
  return names.map((name) => {
    const scale = table.get(name.replace(/^c\d+_/, ''));
    if (scale === undefined) throw new FeatureInputError(`no fixed scale is defined for feature ${name}`);
    return scale;
  });
}

/** One value on its scale. */
export function scaleValue(x: number, scale: FeatureScale): number {
  const [v, lo, hi] = scale.kind === 'log' ? [signedLog(x), signedLog(scale.lo), signedLog(scale.hi)] : [x, scale.lo, scale.hi];
  return (2 * (v - lo)) / (hi - lo) - 1;
}

/** A scaled copy of a row-major rows x scales.length matrix. */
export function applyFixedScales(matrix: Float64Array, scales: readonly FeatureScale[]): Float64Array {
  const columns = scales.length;
  if (columns === 0 || matrix.length % columns !== 0) throw new FeatureInputError(`a matrix of ${matrix.length} values is not whole rows of ${columns} features`);
  const out = new Float64Array(matrix.length);
  for (let i = 0; i < matrix.length; i++) out[i] = scaleValue(matrix[i]!, scales[i % columns]!);
  return out;
}
