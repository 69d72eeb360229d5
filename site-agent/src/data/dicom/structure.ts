import type { DataSet, Element } from 'dicom-parser';
import { DICOM_VRS, LONG_VRS } from './sniff.js';

/**
 * Tells a file that was cut short from a complete file whose lengths do not fit together. Both make the parser
 * run off the end of the buffer, but they need different action at a hospital (copy the file again, or go back
 * to the source of the damaged data), so the rejection reason has to say which one it is.
 */

const UNDEFINED_LENGTH = 0xffffffff;
const SEQUENCE_DELIMITATION_ITEM = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
/** Pixel Data (7FE0,0010), Float Pixel Data (7FE0,0008) and Double Float Pixel Data (7FE0,0009), by element number. */
const PIXEL_ELEMENTS = new Set([0x0010, 0x0008, 0x0009]);
const PIXEL_VRS = new Set(['OB', 'OW', 'OF', 'OD', 'OL', 'UN']);
const PIXEL_TAGS = new Set(['x7fe00010', 'x7fe00008', 'x7fe00009']);
const PIXEL_DATA_GROUP = 0x7fe0;
/** Elements after Pixel Data are rare (Data Set Trailing Padding, signatures); a handful is plenty. */
const MAX_TRAILING_ELEMENTS = 8;

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * True when the bytes from `from` to the end are whole elements of the groups that may follow Pixel Data, such as
 * Data Set Trailing Padding (FFFC,FFFC), or nothing at all.
 */
function onlyTrailingElements(b: Buffer, from: number, littleEndian: boolean): boolean {
  let pos = from;
  for (let n = 0; n < MAX_TRAILING_ELEMENTS && pos + 8 <= b.length; n++) {
    const group = littleEndian ? b.readUInt16LE(pos) : b.readUInt16BE(pos);
    if (group <= PIXEL_DATA_GROUP) return false;
    const vr = String.fromCharCode(b[pos + 4] ?? 0, b[pos + 5] ?? 0);
    let header: number;
    let length: number;
    if (LONG_VRS.has(vr) && pos + 12 <= b.length) [header, length] = [12, littleEndian ? b.readUInt32LE(pos + 8) : b.readUInt32BE(pos + 8)];
    else if (DICOM_VRS.has(vr)) [header, length] = [8, littleEndian ? b.readUInt16LE(pos + 6) : b.readUInt16BE(pos + 6)];
    else if (littleEndian) [header, length] = [8, b.readUInt32LE(pos + 4)]; // implicit VR
    else return false;
    // An undefined-length sequence could only be skipped by parsing it; trailing elements never need one.
    if (length === UNDEFINED_LENGTH) return false;
    pos += header + length;
  }
  return pos === b.length;
}

/** End of encapsulated fragments starting at `start`: just past the Sequence Delimitation Item, if they close. */
function endOfFragments(b: Buffer, start: number): number | undefined {
  let pos = start;
  while (pos + 8 <= b.length && b.readUInt16LE(pos) === 0xfffe) {
    const element = b.readUInt16LE(pos + 2);
    const length = b.readUInt32LE(pos + 4);
    if (element === 0xe0dd) return pos + 8;
    if (element !== 0xe000 || length === UNDEFINED_LENGTH) return undefined;
    pos += 8 + length;
  }
  return undefined;
}

/** True when a (Float) Pixel Data element starting at `at` ends where the file does, give or take trailing elements. */
function completePixelElementAt(b: Buffer, at: number, littleEndian: boolean): boolean {
  if (at + 8 > b.length) return false;
  const element = littleEndian ? b.readUInt16LE(at + 2) : b.readUInt16BE(at + 2);
  if (!PIXEL_ELEMENTS.has(element)) return false;
  const ends = (valueStart: number, length: number): boolean => {
    const end = length === UNDEFINED_LENGTH ? endOfFragments(b, valueStart) : valueStart + length;
    return end !== undefined && end <= b.length && onlyTrailingElements(b, end, littleEndian);
  };
  const vr = String.fromCharCode(b[at + 4] ?? 0, b[at + 5] ?? 0);
  if (PIXEL_VRS.has(vr) && b[at + 6] === 0 && b[at + 7] === 0 && at + 12 <= b.length) {
    if (ends(at + 12, littleEndian ? b.readUInt32LE(at + 8) : b.readUInt32BE(at + 8))) return true;
  }
  // Implicit VR exists only in little endian.
  return littleEndian && ends(at + 8, b.readUInt32LE(at + 4));
}

/**
 * True when the buffer ends with the Sequence Delimitation Item that closes encapsulated Pixel Data (perhaps
 * followed by trailing elements): the file was written to its end, whatever a fragment length inside claims.
 */
export function endsWithSequenceDelimiter(bytes: Uint8Array): boolean {
  const b = view(bytes);
  let at = b.lastIndexOf(SEQUENCE_DELIMITATION_ITEM);
  for (let n = 0; n < MAX_TRAILING_ELEMENTS && at >= 0; n++) {
    if (onlyTrailingElements(b, at + 8, true)) return true;
    at = at > 0 ? b.lastIndexOf(SEQUENCE_DELIMITATION_ITEM, at - 1) : -1;
  }
  return false;
}

/**
 * True when the buffer ends with a whole Pixel Data element: a defined-length value, or encapsulated fragments
 * closed by their Sequence Delimitation Item, followed by nothing but elements that may come after Pixel Data.
 * Pixel Data comes last in an image, so such a file was not cut short, and anything inconsistent found while
 * parsing it is damage, not truncation.
 */
export function endsWithCompletePixelData(bytes: Uint8Array): boolean {
  const b = view(bytes);
  for (const littleEndian of [true, false]) {
    const group = Buffer.from(littleEndian ? [0xe0, 0x7f] : [0x7f, 0xe0]);
    for (let at = b.lastIndexOf(group, b.length - 8); at >= 0; at = at > 0 ? b.lastIndexOf(group, at - 1) : -1) {
      if (completePixelElementAt(b, at, littleEndian)) return true;
    }
  }
  return endsWithSequenceDelimiter(bytes);
}

export function formatTag(tag: string): string {
  return `(${tag.slice(1, 5).toUpperCase()},${tag.slice(5, 9).toUpperCase()})`;
}

/**
 * Top-level elements in the order the parser read them, without the file meta group: dicom-parser appends that
 * group after the dataset (or makes up (0002,0010) for a bare dataset), so it says nothing about the order on disk.
 */
function datasetElements(dataSet: DataSet): Array<[string, Element]> {
  return Object.entries(dataSet.elements).filter(([tag]) => !tag.startsWith('x0002'));
}

/** How many bytes a top-level element claims beyond the end of the buffer (0 when its value fits). */
function overrun(element: Element, byteArray: Uint8Array): number {
  if (element.encapsulatedPixelData === true) return 0;
  return Math.max(0, element.dataOffset + element.length - byteArray.length);
}

/**
 * The first top-level element other than Pixel Data whose value runs past the end of the buffer. dicom-parser
 * lets this pass for implicit VR, and reading such an element later throws a bare string, so it is caught here.
 * Pixel Data is left to the codecs, which check that the frames they need are all there.
 */
export function elementPastEnd(dataSet: DataSet): { tag: string; missing: number } | undefined {
  for (const [tag, element] of datasetElements(dataSet)) {
    const missing = overrun(element, dataSet.byteArray);
    if (missing > 0 && !PIXEL_TAGS.has(tag)) return { tag, missing };
  }
  return undefined;
}

/**
 * Describes the first sign of a wrong element length among the top-level elements the parser read, or undefined
 * when they look consistent. After a wrong length the parser reads data bytes as element headers, which shows as
 * tags out of order, item tags outside a sequence or invalid VRs. Only used to explain a failure: some writers
 * put tags out of order in files that are otherwise fine.
 */
export function structureDamage(dataSet: DataSet): string | undefined {
  let previous = -1;
  let previousTag = '';
  for (const [tag, element] of datasetElements(dataSet)) {
    const value = Number.parseInt(tag.slice(1), 16);
    if (value >>> 16 === 0xfffe) return `an item tag ${formatTag(tag)} appears outside any sequence`;
    if (value <= previous) return `element ${formatTag(tag)} follows ${formatTag(previousTag)}, out of order`;
    if (element.vr !== undefined && !DICOM_VRS.has(element.vr)) return `element ${formatTag(tag)} has no valid value representation`;
    const missing = overrun(element, dataSet.byteArray);
    if (missing > 0) return `element ${formatTag(tag)} declares ${element.length} bytes, ${missing} more than the rest of the file holds`;
    previous = value;
    previousTag = tag;
  }
  return undefined;
}
