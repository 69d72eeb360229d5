import * as federation from '../proto/generated/federa/v1/federation.js';
import type { StudyDefinition } from './definition.js';

/** The update encoding a study's aggregation takes: what the coordinator asks for and the site checks. */
export function encodingOfAggregation(aggregation: StudyDefinition['aggregation']): federation.UpdateEncoding {
  switch (aggregation) {
    case 'plaintext':
      return federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32;
    case 'ckks':
      return federation.UpdateEncoding.UPDATE_ENCODING_CKKS;
    case 'multiparty':
      return federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY;
  }
}
