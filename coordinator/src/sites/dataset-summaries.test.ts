import { describe, expect, it } from 'vitest';
import type { federation } from '@federa/shared';
import { FederationError, GrpcStatus } from '../federation/federation-error.js';
import { validateDatasetSummary } from './dataset-summaries.js';

const summary: federation.DatasetSummary = {
  studyId: 'study',
  files: 6,
  accepted: 5,
  byClass: { normal: 3, lesion: 2 },
  byModality: { CR: 5 },
  byTransferSyntax: { '1.2.840.10008.1.2.1': 5 },
  bySize: { '1025-2048': 5 },
  rejectedByReason: { 'unsupported-transfer-syntax': 1 },
};
const classes = ['normal', 'lesion'];

function refusal(value: federation.DatasetSummary): FederationError {
  try {
    validateDatasetSummary(value, classes);
  } catch (error) {
    if (error instanceof FederationError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('validateDatasetSummary', () => {
  it('returns the counts of a valid summary, without the study id', () => {
    const { studyId: _studyId, ...counts } = summary;
    expect(validateDatasetSummary(summary, classes)).toEqual(counts);
  });

  it('refuses class names that are not the study\'s, naming the proto field and not the name', () => {
    const error = refusal({ ...summary, byClass: { normal: 3, 'DOE_JOHN.dcm': 2 } });
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.message).toBe("dataset summary refused: by_class: category 2 of 2 is not one of the study's classes");
  });

  it('names every bad field as the site\'s proto code spells it', () => {
    const error = refusal({ ...summary, files: 9, bySize: { 'DOE^JOHN': 5 }, rejectedByReason: { 'Patient Name: DOE^JOHN': 1 } });
    expect(error.message).toMatch(/by_size: category 1 of 1 is not one of/);
    expect(error.message).toMatch(/rejected_by_reason: category 1 of 1 is not a kebab-case reason code/);
    expect(error.message).not.toContain('DOE');
  });
});
