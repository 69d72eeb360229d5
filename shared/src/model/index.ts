export { createPrng, deriveSeed, type Prng } from './prng.js';
export type { ParameterInit, ParameterShape } from './types.js';
export { smallCnnLayers, smallCnnSpecSchema, type SmallCnnLayer, type SmallCnnSpec } from './small-cnn.js';
export { resnetLayers, resnetSpecSchema, type ResnetConv, type ResnetLayer, type ResnetSpec } from './resnet.js';
export { mobilenetLayers, mobilenetSpecSchema, type MobilenetLayer, type MobilenetSpec } from './mobilenet.js';
export { unetLayers, unetSpecSchema, type UnetConv, type UnetLayer, type UnetSpec } from './unet.js';
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
  architectureTask,
  describeParameters,
  elementCount,
  isClassificationArchitecture,
  modelOutputShape,
  parameterCount,
  type ArchitectureDefinition,
  type ArchitectureTask,
  type ClassificationArchitecture,
  type ClassificationModelSpec,
} from './registry.js';
export { initialWeights } from './weights.js';
export { modelSpecHash } from './hash.js';
export { modelSpecFromMessage, modelSpecToMessage, type ModelSpecMessage } from './wire.js';
