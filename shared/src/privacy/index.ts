export {
  DEFAULT_RDP_ORDERS,
  subsampledGaussianRdp,
  addRdp,
  rdpToEpsilon,
  rdpToEpsilonClassic,
  epsilonSpent,
  noiseMultiplierForEpsilon,
  type PrivacySpent,
  type EpsilonSpentOptions,
  type NoiseForEpsilonOptions,
} from './rdp-accountant.js';
export { secureGaussian, secureUniform, addGaussianNoise } from './gaussian-noise.js';
