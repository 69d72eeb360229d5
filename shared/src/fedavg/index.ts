export { weightedUpdateVector, UpdateAccumulator, applyAggregate } from './vector.js';
export { float32ToBytes, bytesToFloat32 } from './bytes.js';
export {
  contributionVector,
  ownContributionProblem,
  readContributions,
  updateVectorLength,
  type Contributions,
} from './contributions.js';
