/**
 * Hand-crafted image features (first-order statistics, Sobel gradients and edge density, GLCM texture, uniform LBP
 * histograms) inside a mask or the whole image, the fixed per-feature scale every site shares, and linear classifiers
 * on them whose flat parameter vectors FedAvg averages like CNN weights (the site's train/linear runs them in studies).
 */
export {
  extractFeatures,
  featureMatrix,
  featureNames,
  featureOptionsSchema,
  parseFeatureOptions,
  type FeatureImage,
  type FeatureMatrix,
  type FeatureOptions,
  type FeatureVector,
  type ResolvedFeatureOptions,
} from './extract.js';
export { FeatureInputError, type Plane, type Region } from './region.js';
export { DEFAULT_HISTOGRAM_BINS, FIRST_ORDER_FEATURES, firstOrderFeatures, firstOrderStatistics, type FirstOrderOptions, type FirstOrderStatistics } from './first-order.js';
export { DEFAULT_EDGE_THRESHOLD, EDGE_FEATURES, edgeFeatures, sobelMagnitude, type EdgeOptions, type EdgeThreshold } from './edges.js';
export { DEFAULT_GLCM_DISTANCES, DEFAULT_GLCM_LEVELS, GLCM_FEATURES, glcmFeatures, glcmMatrices, glcmMatrixFeatures, glcmOffsets, type GlcmOptions } from './glcm.js';
export { LBP_BINS, LBP_FEATURES, lbpCodes, lbpFeatures } from './lbp.js';
export { addFeatureSums, featureSums, Standardizer, type FeatureSums } from './standardize.js';
export {
  evaluateLinearModel,
  initialLinearParameters,
  linearModelSpecSchema,
  linearObjective,
  linearOutputs,
  linearParameterCount,
  predictLinearProbabilities,
  type LinearModelSpec,
  type ObjectiveOptions,
} from './linear-models.js';
export { linearTrainOptionsSchema, LinearTrainingError, trainLinearModel, type LinearTrainOptions, type LinearTrainResult } from './linear-train.js';
export { applyFixedScales, fixedScales, scaleValue, type FeatureScale, type ScaleContext } from './fixed-scale.js';
