export { canonicalJson } from './canonical-json.js';
export {
  siteIdSchema,
  studyDefinitionSchema,
  studyHash,
  describeIssues,
  type StudyDefinition,
  type StudyDefinitionInput,
} from './definition.js';
export {
  DEFAULT_PREPROCESSING,
  parsePreprocessingJson,
  PreprocessingError,
  preprocessingSchema,
  preprocessingToJson,
  WINDOW_PRESETS,
  windowValues,
  type Preprocessing,
  type PreprocessingInput,
  type WindowPresetName,
  type WindowSetting,
} from './preprocessing.js';
