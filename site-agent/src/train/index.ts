export type {
  AugmentationOptions,
  BackendInfo,
  BackendName,
  BackendPreference,
  EvaluationResult,
  LabeledImages,
  Optimizer,
  TrainOptions,
  TrainResult,
} from './types.js';
export { backendAvailability, BackendUnavailableError, currentBackend, initBackend } from './backend.js';
export { registerWasmTrainingKernels } from './wasm-kernels.js';
export { buildModel, getFlatWeights, setFlatWeights } from './model.js';
export { TrainingDataError, TrainingDivergedError, evaluateModel, predictProbabilities, configuredThreads, trainingThreads, trainLocal } from './train.js';
export { closeTrainingThreads, TrainingThreadError } from './parallel/index.js';
export { brightSquareImages } from './synthetic.js';
export { clearLinearFeatureCache, linearInputs, type LinearInputs } from './linear/index.js';
