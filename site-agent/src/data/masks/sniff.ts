import { defaultCodecs } from '../dicom/codecs.js';
import { MAX_INFLATED_BYTES, parseStructure } from '../dicom/parse.js';
import { A, text } from './attributes.js';
import { SEGMENTATION_SOP_CLASS_UIDS } from './dicom-seg.js';
import { RT_STRUCTURE_SET_SOP_CLASS_UID } from './rtstruct.js';

/** A DICOM object that holds masks rather than an image. */
export type MaskObjectKind = 'dicom-seg' | 'rtstruct';

const DICM_OFFSET = 128;
const META_START = DICM_OFFSET + 4;
const MEDIA_STORAGE_SOP_CLASS = 0x0002;
const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

/**
 * Media Storage SOP Class UID (0002,0002) from a Part 10 file meta header, which is always explicit VR little
 * endian right after "DICM". Undefined when there is no meta header or the bytes end first.
 */
export function mediaStorageSopClass(bytes: Uint8Array): string | undefined {
  if (bytes.length < META_START || String.fromCharCode(...bytes.subarray(DICM_OFFSET, META_START)) !== 'DICM') return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = META_START;
  while (at + 8 <= bytes.length && view.getUint16(at, true) === 0x0002) {
    const element = view.getUint16(at + 2, true);
    const vr = String.fromCharCode(bytes[at + 4] ?? 0, bytes[at + 5] ?? 0);
    const long = LONG_VRS.has(vr);
    if (long && at + 12 > bytes.length) return undefined;
    const length = long ? view.getUint32(at + 8, true) : view.getUint16(at + 6, true);
    const start = at + (long ? 12 : 8);
    if (start + length > bytes.length) return undefined;
    if (element === MEDIA_STORAGE_SOP_CLASS) return String.fromCharCode(...bytes.subarray(start, start + length)).replace(/[\0 ]+$/, '');
    at = start + length;
  }
  return undefined;
}

function kindOf(sopClass: string | undefined): MaskObjectKind | undefined {
  if (sopClass === undefined) return undefined;
  if (SEGMENTATION_SOP_CLASS_UIDS.has(sopClass)) return 'dicom-seg';
  return sopClass === RT_STRUCTURE_SET_SOP_CLASS_UID ? 'rtstruct' : undefined;
}

/**
 * Whether a file is a Segmentation or an RT Structure Set (by SOP Class, never by name), so data loaders can
 * keep mask objects apart from images. The file meta header answers in a few hundred bytes; only a file
 * without one is parsed whole, unless `metaOnly` (the bytes are a prefix of the file). Anything that does not
 * parse is no mask object: the image decoder then gives its own reason.
 */
export function sniffMaskObject(bytes: Uint8Array, options: { readonly metaOnly?: boolean } = {}): MaskObjectKind | undefined {
  const fromMeta = mediaStorageSopClass(bytes);
  if (fromMeta !== undefined || options.metaOnly === true) return kindOf(fromMeta);
  try {
    const { dataSet } = parseStructure(bytes, { file: '<sniff>', codecs: defaultCodecs, maxInflatedBytes: MAX_INFLATED_BYTES });
    return kindOf(text(dataSet, A.sopClassUid));
  } catch {
    return undefined;
  }
}
