export { startCoordinator, type RunningCoordinator } from './app/bootstrap.js';
export { configFromCommandLine, parseCoordinatorConfig, coordinatorConfigSchema, type CoordinatorConfig } from './config/index.js';
export { openDatabase, type Database } from './persistence/index.js';
export {
  provisionConsortium,
  addSite,
  renewParticipant,
  revokeSite,
  generateConsortiumCkksKeys,
  runProvisionCli,
} from './provision/index.js';
