/**
 * Why a file could not be turned into pixels. Kept as a closed set so callers can aggregate and report them.
 * 'truncated' means the file ends before the data it declares (an interrupted copy or export); 'corrupt' means
 * the file is complete but its contents are damaged: lengths that do not fit together, or a compressed image
 * stream its decoder cannot read.
 */
export type DicomRejectionReason =
  | 'not-dicom'
  | 'truncated'
  | 'corrupt'
  | 'no-pixel-data'
  | 'unsupported-transfer-syntax'
  | 'unsupported-pixel-format';

export const DICOM_REJECTION_REASONS: readonly DicomRejectionReason[] = [
  'not-dicom',
  'truncated',
  'corrupt',
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

/**
 * A compressed frame its decoder could not read. The decoder's own error (for the WebAssembly codecs a bare
 * pointer into wasm memory) means nothing to the people who read these messages, so it is kept only as the cause.
 */
export function damagedStream(file: string, stream: string, frameIndex: number, frameCount: number, decoder: string, cause?: unknown): DicomRejection {
  return new DicomRejection(file, 'corrupt', `the ${stream} stream of ${frameLabel(frameIndex, frameCount)} is damaged and cannot be decoded (${decoder} could not read it)`, { cause });
}

/** "frame 3 of 10", counted from 1 as people do (decodeFrame's index counts from 0). */
export function frameLabel(frameIndex: number, frameCount: number): string {
  return `frame ${frameIndex + 1} of ${frameCount}`;
}
