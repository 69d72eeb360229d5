/** Why a file could not be turned into pixels. Kept as a closed set so callers can aggregate and report them. */
export type DicomRejectionReason =
  | 'not-dicom'
  | 'truncated'
  | 'no-pixel-data'
  | 'unsupported-transfer-syntax'
  | 'unsupported-pixel-format';

export const DICOM_REJECTION_REASONS: readonly DicomRejectionReason[] = [
  'not-dicom',
  'truncated',
  'no-pixel-data',
  'unsupported-transfer-syntax',
  'unsupported-pixel-format',
];

/**
 * Thrown for any file the reader refuses. Site data is messy (exports from many PACS), so a refusal is an
 * expected outcome, not a bug: the dataset loader catches this class, records the reason and moves on.
 */
export class DicomRejection extends Error {
  override readonly name = 'DicomRejection';
  readonly reason: DicomRejectionReason;
  readonly file: string;

  constructor(file: string, reason: DicomRejectionReason, detail: string, options?: { cause?: unknown }) {
    super(`${file}: ${detail}`, options);
    this.file = file;
    this.reason = reason;
  }
}

export function isDicomRejection(value: unknown): value is DicomRejection {
  return value instanceof DicomRejection;
}
