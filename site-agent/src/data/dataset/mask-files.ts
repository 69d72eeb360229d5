/**
 * How mask files are told apart from images in a site's folder. DICOM SEG and RT Structure Sets are recognised
 * by their SOP Class (see sniffMaskObject), wherever they lie and whatever their name. PNG masks go by name:
 * `<name>.mask.png` is the mask of the image `<name>.<ext>` (or `<name>` without an extension) in the same
 * folder, e.g. `scans/case7.dcm` and `scans/case7.mask.png`; the suffix is matched case-insensitively.
 */
export const PNG_MASK_SUFFIX = '.mask.png';

export function isPngMaskName(file: string): boolean {
  return file.length > PNG_MASK_SUFFIX.length && file.toLowerCase().endsWith(PNG_MASK_SUFFIX);
}

/** The path without its last extension, or undefined when the last name has none. */
function stem(file: string): string | undefined {
  const dot = file.lastIndexOf('.');
  return dot > file.lastIndexOf('/') + 1 ? file.slice(0, dot) : undefined;
}

/**
 * Every `*.mask.png` among `files` with the images it may belong to (paths relative to the data folder): one
 * normally, none for a mask whose image is missing, several when the name is ambiguous (`a.dcm` and `a.png`).
 */
export function pngMaskCandidates(files: readonly string[]): Map<string, string[]> {
  const images = files.filter((f) => !isPngMaskName(f));
  const exact = new Set(images);
  const byStem = new Map<string, string[]>();
  for (const file of images) {
    const s = stem(file);
    if (s !== undefined) byStem.set(s, [...(byStem.get(s) ?? []), file]);
  }
  const out = new Map<string, string[]>();
  for (const mask of files.filter(isPngMaskName)) {
    const base = mask.slice(0, -PNG_MASK_SUFFIX.length);
    out.set(mask, [...(exact.has(base) ? [base] : []), ...(byStem.get(base) ?? [])]);
  }
  return out;
}
