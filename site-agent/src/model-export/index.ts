/**
 * The consortium's model for use at the hospital: a round's decrypted global model exported as a TensorFlow.js
 * LayersModel with the study's preprocessing beside it, and predictions from such an export that match the
 * site's own evaluation.
 */
export { exportGlobalModel, type ExportOptions, type ExportResult } from './export.js';
export { EXPORT_MANIFEST_FILE, ExportedModelError, exportManifestSchema, readExportManifest, type ExportManifest } from './manifest.js';
export { loadExportedModel, predictFiles, type ExportedModel, type FilePrediction } from './predict.js';
export { listSavedModels, ModelExportError, readSiteModel, savedRounds, type SavedStudyModels, type SiteModel } from './site-models.js';
export { loadLayersModel, saveLayersModel } from './tfjs-files.js';
