/**
 * Why a decoded image (or a PNG/JPEG that would not decode) cannot become model input under the study's
 * pipeline. Like DicomRejection these are expected outcomes at a site: recorded per file, never a crash.
 */
export type ImageRejectionReason =
  /** Neither DICOM nor PNG/JPEG. */
  | 'not-dicom'
  /** A PNG/JPEG that ends early. */
  | 'truncated'
  /** A PNG/JPEG the decoder refuses for any other reason. */
  | 'unreadable-image'
  /** The study's window needs modality values (HU for the CT presets) that this image does not carry. */
  | 'window-not-applicable';

export class ImageRejection extends Error {
  override readonly name = 'ImageRejection';
  readonly reason: ImageRejectionReason;
  readonly file: string;

  constructor(file: string, reason: ImageRejectionReason, detail: string, options?: { cause?: unknown }) {
    super(`${file}: ${detail}`, options);
    this.file = file;
    this.reason = reason;
  }
}

export function isImageRejection(value: unknown): value is ImageRejection {
  return value instanceof ImageRejection;
}
