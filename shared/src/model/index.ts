export { createPrng, deriveSeed, type Prng } from './prng.js';
export type { ParameterInit, ParameterShape } from './types.js';
export { smallCnnLayers, smallCnnSpecSchema, type SmallCnnLayer, type SmallCnnSpec } from './small-cnn.js';
export { resnetLayers, resnetSpecSchema, type ResnetConv, type ResnetLayer, type ResnetSpec } from './resnet.js';
export { mobilenetLayers, mobilenetSpecSchema, type MobilenetLayer, type MobilenetSpec } from './mobilenet.js';
export { unetLayers, unetSpecSchema, type UnetConv, type UnetLayer, type UnetSpec } from './unet.js';
export {
  FEATURE_GROUP_SIZES,
  FEATURE_GROUPS,
  linearFeatureCount,
  linearOutputCount,
  linearSvmSpecSchema,
  logisticRegressionSpecSchema,
  type FeatureGroup,
  type LinearArchitectureSpec,
  type LinearSvmSpec,
  type LogisticRegressionSpec,
} from './linear.js';
export {
  ARCHITECTURE_NAMES,
  InvalidModelSpecError,
  modelSpecSchema,
  parseModelSpec,
  type Architecture,
  type ModelSpec,
  type ResolvedModelSpec,
} from './spec.js';
export {
  CLASSIFICATION_ARCHITECTURES,
  WEIGHTS_LAYOUT_VERSION,
  architectureFamily,
  architectureTask,
  describeParameters,
  elementCount,
  isClassificationArchitecture,
  isLinearArchitecture,
  isLinearModelSpec,
  modelOutputShape,
  parameterCount,
  type ArchitectureDefinition,
  type ArchitectureFamily,
  type ArchitectureTask,
  type ClassificationArchitecture,
  type ClassificationModelSpec,
  type LinearArchitecture,
  type NetworkArchitecture,
  type NetworkModelSpec,
} from './registry.js';
export { initialWeights } from './weights.js';
export { modelSpecHash } from './hash.js';
export { modelSpecFromMessage, modelSpecToMessage, type ModelSpecMessage } from './wire.js';
