/**
 * A 9x10 test image and elliptical mask shared by the feature tests, with reference values computed once by a numpy
 * script that follows pyradiomics' radiomics/firstorder.py and radiomics/glcm.py formulas literally (numpy 1.24;
 * np.percentile, np.nanstd, np.histogram(bins=32, range=(0, 1)), log2(p + eps), the GLCM built by looping over the
 * masked pixel pairs and made symmetric, absent grey levels deleted as pyradiomics does) and a numpy Sobel.
 * Pixel values are the integers below divided by 255 (an x/y ramp plus uniform noise from RandomState(20240611)).
 */
export const REF_HEIGHT = 9;
export const REF_WIDTH = 10;

const IMAGE_255 = [
  43, 43, 85, 64, 106, 129, 155, 163, 119, 167, 76, 93, 58, 88, 103, 116, 145, 131, 176, 183, 75, 38, 87, 102, 140, 105, 174, 136, 204, 213, 52,
  60, 100, 89, 123, 169, 182, 140, 182, 225, 102, 84, 83, 104, 132, 146, 134, 176, 164, 200, 92, 71, 97, 100, 149, 137, 175, 191, 208, 195, 60,
  98, 144, 132, 126, 133, 190, 211, 222, 215, 132, 96, 100, 128, 140, 173, 203, 222, 192, 225, 144, 159, 123, 175, 174, 165, 194, 238, 246, 255,
];

/** ((y - 4.2) / 3.6)² + ((x - 4.6) / 4.1)² <= 1: 46 pixels, none on the image border. */
export const REF_MASK = Uint8Array.from([
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
  0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]);

export const REF_PIXELS = Float64Array.from(IMAGE_255, (v) => v / 255);

export const REF_PLANE = { pixels: REF_PIXELS, height: REF_HEIGHT, width: REF_WIDTH };

/** firstorder on the masked pixels (pyradiomics formulas; excess kurtosis = pyradiomics kurtosis - 3). */
export const REF_FIRST_ORDER_MASK = { count: 46, mean: 0.5469735720375107, variance: 0.02658692417995406, std: 0.16305497287710688, skewness: 0.21431532677811965, excess_kurtosis: -0.8000609397911318, min: 0.23529411764705882, max: 0.8705882352941177, median: 0.5352941176470588, p10: 0.3431372549019608, p90: 0.7725490196078431, iqr: 0.27647058823529413, range: 0.6352941176470588, mad: 0.13256236331961896, robust_mad: 0.09486201888162675, energy: 14.985282583621684, rms: 0.5707600307374614, entropy: 3.950981598934455, uniformity: 0.07277882797731569 };
/** firstorder on the whole image. */
export const REF_FIRST_ORDER_WHOLE = { count: 90, mean: 0.5487581699346404, variance: 0.041689879960698874, std: 0.20418099804021644, skewness: 0.09539229775261643, excess_kurtosis: -0.799837071723263, min: 0.14901960784313725, max: 1.0, median: 0.5352941176470588, p10: 0.29254901960784313, p90: 0.8282352941176471, iqr: 0.2980392156862745, range: 0.8509803921568627, mad: 0.17010312273057374, robust_mad: 0.12696078431372548, energy: 30.85428681276432, rms: 0.5855129452289801, entropy: 4.551381330202605, uniformity: 0.04962962962962963 };

/** Sobel/8 magnitude statistics (mean, std, median, p90, max, density) in the mask, relative threshold 0.25. */
export const REF_EDGES_MASK = [0.07513317908899929, 0.030994663919756762, 0.07384100566016227, 0.11647466279815179, 0.14055042289653097, 0.9130434782608695];
/** The same over the whole image's interior with an absolute threshold of 0.08. */
export const REF_EDGES_WHOLE_ABSOLUTE = [0.07419005712597379, 0.032928904116756204, 0.07276390832901375, 0.121102260282282, 0.14595171500940593, 0.39285714285714285];

/** pyradiomics glcm formulas, 16 levels, distance 1, in the mask. */
export const REF_GLCM_MASK = { contrast: 3.4014531521110465, dissimilarity: 1.4546486408328514, homogeneity: 0.4581317121990497, inverse_difference: 0.5174832781740677, asm: 0.03708017458183612, energy: 0.19232893999790254, correlation: 0.6976843773435206, entropy: 4.9894977047665225, cluster_shade: 20.70220018450747, cluster_prominence: 920.4077981552166, autocorrelation: 89.45623353254932, max_probability: 0.0678748152432363 };
/** pyradiomics glcm formulas, 8 levels, distances [1, 2], whole image. */
export const REF_GLCM_WHOLE_8_D12 = { contrast: 1.299903549382716, dissimilarity: 0.8751019620811287, homogeneity: 0.6049291776895944, inverse_difference: 0.6284315751763668, asm: 0.05579971024475176, energy: 0.23538072710362468, correlation: 0.7199911463451878, entropy: 4.428309412887989, cluster_shade: -0.10852918349402835, cluster_prominence: 142.28273797726933, autocorrelation: 25.663323963844796, max_probability: 0.10026730599647266 };
