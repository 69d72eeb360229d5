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
export {
  DEFAULT_DELTA,
  describeStudyPrivacy,
  MAX_SITE_NOISE_STD,
  PRIVACY_MODES,
  resolveStudyPrivacy,
  roundMechanism,
  roundRdp,
  siteNoiseStd,
  spentEpsilon,
  studyPrivacyIssues,
  studyPrivacySchema,
  type PrivacyMode,
  type PrivacyPlan,
  type StudyPrivacy,
} from './study-privacy.js';
