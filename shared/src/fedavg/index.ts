export { weightedUpdateVector, UpdateAccumulator, applyAggregate } from './vector.js';
export { float32ToBytes, bytesToFloat32 } from './bytes.js';
export {
  contributionVector,
  largestChange,
  MAX_SAMPLE_WEIGHT,
  MAX_WEIGHT_CHANGE,
  sampleWeight,
  ownContributionProblem,
  readContributions,
  updateVectorLength,
  type Contributions,
} from './contributions.js';
export {
  averageUpdate,
  initialServerState,
  SERVER_OPTIMIZERS,
  serverOptimizerSchema,
  serverStateHash,
  serverStep,
  type ServerOptimizer,
  type ServerOptimizerKind,
  type ServerOptimizerState,
} from './server-optimizer.js';
export {
  baseStateSha256,
  decodeServerState,
  encodeServerState,
  initialGlobalModel,
  nextGlobalModel,
  ServerStateError,
  type GlobalModelState,
} from './server-state.js';
