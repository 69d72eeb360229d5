/** Linear models on hand-crafted image features (logistic-regression, linear-svm): training, evaluation, scores. */
export { evaluateLinear, predictLinear, trainLinear } from './train.js';
export { clearLinearFeatureCache, linearInputs, type LinearInputs } from './features.js';
