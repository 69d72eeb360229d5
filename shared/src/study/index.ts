export { canonicalJson } from './canonical-json.js';
export { MAX_STUDY_FILE_BYTES, parseStudyYaml, StudyFileError } from './yaml.js';
export {
  siteIdSchema,
  textSchema,
  studyDefinitionSchema,
  studyHash,
  resolveStudyDefinition,
  STUDY_ID,
  assertStudyId,
  studyDefinitionJson,
  verifyStudyDefinition,
  StudyDefinitionMismatchError,
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
export { encodingOfAggregation } from './encoding.js';
