export { SiteAgent, AGENT_VERSION, RoundStateStore, splitTrainValidation, type RoundState, type SiteAgentEvents } from './agent/index.js';
export { loadSiteConfig, parseSiteConfig, siteConfigSchema, type SiteConfig } from './config/index.js';
export { FederationClient, CoordinatorRefusal, siteTransport, SiteKitError, type SiteTransport } from './client/index.js';
export { loadLabeledDataset, pipelineHash, preprocessImage, type LoadedDataset, type RejectedFile } from './data/index.js';
export { closeTrainingThreads, evaluateModel, initBackend, trainLocal, type BackendInfo, type LabeledImages } from './train/index.js';
export { generateConsortium, type ConsortiumSummary } from './sim/index.js';
export { runSitesCli, SimulatedSite } from './sim/sites/index.js';
export { runDoctor, formatDoctorReport, type DoctorCheck } from './doctor/index.js';
export { PrivacyLedger, ledgerPath, readLedger, verifyLedger } from './ledger/index.js';
export { StudyDecisions, type KnownStudy } from './policy/index.js';
export {
  exportGlobalModel,
  listSavedModels,
  loadExportedModel,
  predictFiles,
  readExportManifest,
  ExportedModelError,
  ModelExportError,
  type ExportManifest,
  type ExportResult,
  type FilePrediction,
} from './model-export/index.js';
