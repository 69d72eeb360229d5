import { describe, expect, it } from 'vitest';
import { describeIssues } from '../study/index.js';
import { datasetSummarySchema, modalityCategory, sizeBucket, transferSyntaxCategory, type DatasetSummary } from './index.js';

const good: DatasetSummary = {
  files: 10,
  accepted: 8,
  byClass: { normal: 5, lesion: 3 },
  byModality: { CT: 6, '(none)': 2 },
  byTransferSyntax: { '1.2.840.10008.1.2.1': 5, '1.2.840.10008.1.2.4.90': 1, PNG: 2 },
  bySize: { '257-512': 6, '<=128': 2 },
  rejectedByReason: { truncated: 1, 'missing-label': 1 },
};

const issues = (value: unknown): string[] => {
  const parsed = datasetSummarySchema.safeParse(value);
  return parsed.success ? [] : describeIssues(parsed.error);
};

describe('dataset summary vocabulary', () => {
  it('buckets by the larger side, edges included in the lower bucket', () => {
    expect([sizeBucket(128, 64), sizeBucket(129, 1), sizeBucket(512, 512), sizeBucket(300, 513), sizeBucket(2048, 2048), sizeBucket(2049, 10)]).toEqual([
      '<=128',
      '129-256',
      '257-512',
      '513-1024',
      '1025-2048',
      '>2048',
    ]);
  });

  it('keeps standard transfer syntaxes and modality terms, and folds everything else into fixed categories', () => {
    expect(transferSyntaxCategory('1.2.840.10008.1.2.4.201')).toBe('1.2.840.10008.1.2.4.201');
    expect(transferSyntaxCategory('1.2.276.0.7230010.3.1.4.8323329')).toBe('private');
    expect(transferSyntaxCategory('1.2.840.10008.5.1.4.1.1.2')).toBe('private');
    expect([modalityCategory('CT'), modalityCategory(' mr '), modalityCategory(undefined), modalityCategory('DOE^JOHN'), modalityCategory('JOHN')]).toEqual([
      'CT',
      'MR',
      '(none)',
      'other',
      'other',
    ]);
  });

  it('accepts a consistent summary', () => {
    expect(issues(good)).toEqual([]);
  });

  it('refuses categories outside the vocabulary without repeating them', () => {
    const found = issues({
      ...good,
      byModality: { CT: 6, 'DOE^JOHN': 2 },
      byTransferSyntax: { '1.2.840.10008.1.2.1': 5, '2.25.123456789': 3 },
      bySize: { '257-512': 6, '512x512': 2 },
      rejectedByReason: { 'images/DOE_JOHN.dcm is truncated': 1, 'missing-label': 1 },
    });
    expect(found).toEqual([
      'byModality: category 2 of 2 is not a DICOM modality defined term, "(none)" or "other"',
      'byTransferSyntax: category 2 of 2 is not a standard transfer syntax UID, "private" or one of PNG, JPEG, other',
      'bySize: category 2 of 2 is not one of <=128, 129-256, 257-512, 513-1024, 1025-2048, >2048',
      'rejectedByReason: category 1 of 2 is not a kebab-case reason code of at most 40 characters',
    ]);
    expect(found.join()).not.toMatch(/DOE|2\.25|512x512/);
  });

  it('refuses counts that do not add up or are not whole', () => {
    expect(issues({ ...good, bySize: { '257-512': 7 } })).toEqual(['bySize: counts 7 images, but accepted is 8']);
    expect(issues({ ...good, files: 11 })).toEqual(['files: is 11, but accepted (8) and rejected (2) add up to 10']);
    expect(issues({ ...good, byClass: { normal: 4.5, lesion: 3.5 } })[0]).toBe('byClass: count 1 of 2 is not a whole number in [0, 2^32)');
    expect(issues({ ...good, extra: 1 })[0]).toMatch(/^\(root\): .*extra/);
    const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`reason-${i}`, 0]));
    expect(issues({ ...good, rejectedByReason: { ...many, truncated: 2 } })).toContain('rejectedByReason: has 301 categories, at most 256 are allowed');
  });
});
