export { runProvisionCli, PROVISION_USAGE, type ProvisionCliIo } from './cli.js';
export {
  provisionConsortium,
  addSite,
  renewParticipant,
  revokeSite,
  type AddSiteOptions,
  type ParticipantKitSummary,
  type ProvisionConsortiumOptions,
  type ProvisionResult,
  type RenewOptions,
  type RevokeOptions,
  type RevokeResult,
} from './provision.js';
export {
  COORDINATOR_PARTICIPANT,
  ConsortiumConfigError,
  consortiumConfigSchema,
  loadConsortiumFile,
  parseConsortiumConfig,
  parseConsortiumYaml,
  type ConsortiumConfig,
} from './consortium.js';
export { validateCkksKeyMaterial, type CkksKeyGenerator, type CkksKeyMaterial } from './ckks.js';
export { ProvisionError } from './errors.js';
export { kitsLayout, OPERATOR_FILES, type KitsLayout } from './state.js';
export { generateConsortiumCkksKeys } from './ckks-keys.js';
