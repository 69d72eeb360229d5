import { MaskError } from './errors.js';
import type { LabelMask, MaskFile } from './types.js';

/** An image to pair with a mask: by SOP Instance UID first, then by the key a PNG mask was stored under. */
export interface MaskImageRef {
  readonly sopInstanceUid?: string | undefined;
  readonly fileKey?: string | undefined;
  readonly rows: number;
  readonly columns: number;
}

export interface MaskPair<T extends MaskImageRef> {
  readonly image: T;
  readonly key: string;
  readonly mask: LabelMask;
  /** The mask file, to look up what its labels mean (MaskFile.segments). */
  readonly file: string;
}

/** An image whose mask cannot be used: its size differs, or two mask files claim it. */
export interface MaskMismatch<T extends MaskImageRef> {
  readonly image: T;
  readonly key: string;
  readonly error: MaskError;
}

export interface MaskMatch<T extends MaskImageRef> {
  readonly pairs: MaskPair<T>[];
  readonly imagesWithoutMask: T[];
  readonly masksWithoutImage: { readonly key: string; readonly file: string }[];
  /** Filled only with `mismatches: 'report'`; otherwise the first mismatch throws. */
  readonly mismatched: MaskMismatch<T>[];
}

export interface MatchMasksOptions {
  /**
   * 'throw' (default): the first mismatch throws its MaskError. 'report': mismatched images are listed instead,
   * so a loader can reject them one by one and keep the rest.
   */
  readonly mismatches?: 'throw' | 'report';
}

/**
 * Pairs images with masks by key. A key found in two mask files is refused (which one is right cannot be
 * told), and so is a mask whose size differs from its image's: masks are never resampled, since a mask on
 * another grid means the pairing or the geometry is wrong.
 */
export function matchMasks<T extends MaskImageRef>(images: readonly T[], maskFiles: MaskFile | readonly MaskFile[], options: MatchMasksOptions = {}): MaskMatch<T> {
  const files: readonly MaskFile[] = Array.isArray(maskFiles) ? maskFiles : [maskFiles as MaskFile];
  const report = options.mismatches === 'report';
  const byKey = new Map<string, { mask: LabelMask; file: string }>();
  // Keys claimed by more than one file, with the error an image under that key gets.
  const ambiguous = new Map<string, MaskError>();
  for (const maskFile of files) {
    for (const [key, mask] of maskFile.masks) {
      const earlier = byKey.get(key);
      if (earlier !== undefined) {
        const error = new MaskError(maskFile.file, 'mismatch', `image ${key} also has a mask in ${earlier.file}; which one applies is ambiguous`);
        if (!report) throw error;
        if (!ambiguous.has(key)) ambiguous.set(key, error);
        continue;
      }
      byKey.set(key, { mask, file: maskFile.file });
    }
  }
  const used = new Set<string>();
  const pairs: MaskPair<T>[] = [];
  const imagesWithoutMask: T[] = [];
  const mismatched: MaskMismatch<T>[] = [];
  for (const image of images) {
    const key = [image.sopInstanceUid, image.fileKey].find((k): k is string => k !== undefined && byKey.has(k));
    const found = key === undefined ? undefined : byKey.get(key);
    if (key === undefined || found === undefined) {
      imagesWithoutMask.push(image);
      continue;
    }
    used.add(key);
    const twice = ambiguous.get(key);
    if (twice !== undefined) {
      mismatched.push({ image, key, error: twice });
      continue;
    }
    const { mask, file } = found;
    if (mask.rows !== image.rows || mask.columns !== image.columns) {
      const error = new MaskError(file, 'mismatch', `mask for image ${key} is ${mask.rows} x ${mask.columns} but the image is ${image.rows} x ${image.columns} (rows x columns)`);
      if (!report) throw error;
      mismatched.push({ image, key, error });
      continue;
    }
    pairs.push({ image, key, mask, file });
  }
  const masksWithoutImage = [...byKey].filter(([key]) => !used.has(key)).map(([key, { file }]) => ({ key, file }));
  return { pairs, imagesWithoutMask, masksWithoutImage, mismatched };
}
