export { canonicalJson } from './canonical-json.js';
export {
  siteIdSchema,
  studyDefinitionSchema,
  studyHash,
  describeIssues,
  type StudyDefinition,
  type StudyDefinitionInput,
} from './definition.js';
