/**
 * Why a mask file could not be used. 'not-a-mask': the file is neither a Segmentation, an RT Structure Set nor a
 * PNG. 'invalid': it breaks the standard or contradicts itself. 'unsupported': valid, but beyond what a 2D
 * label mask can hold (multi-frame sources, more than 255 labels, slide tiles). 'mismatch': mask and image
 * disagree (size, ambiguous keys). Files the DICOM parser cannot read at all fail with its DicomRejection.
 */
export type MaskErrorReason = 'not-a-mask' | 'invalid' | 'unsupported' | 'mismatch';

export class MaskError extends Error {
  override readonly name = 'MaskError';
  readonly file: string;
  readonly reason: MaskErrorReason;

  constructor(file: string, reason: MaskErrorReason, detail: string, options?: { cause?: unknown }) {
    super(`${file}: ${detail}`, options);
    this.file = file;
    this.reason = reason;
  }
}

export function isMaskError(value: unknown): value is MaskError {
  return value instanceof MaskError;
}
