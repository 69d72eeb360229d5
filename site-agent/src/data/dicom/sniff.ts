import { EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN } from './transfer-syntax.js';

/**
 * Detection of DICOM data that lacks the Part 10 preamble. Some archives and older modalities write a bare
 * dataset (no 128-byte preamble, no 'DICM', no file meta), occasionally after a stray byte. We recognise one by
 * walking the first few elements and requiring a consistent structure, which random or text data fails.
 */

/** Every value representation PS3.5 6.2 defines. */
export const DICOM_VRS: ReadonlySet<string> = new Set([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV', 'OW',
  'PN', 'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]);
/** VRs whose explicit encoding has 2 reserved bytes and a 32-bit length (PS3.5 7.1.2). */
export const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

const UNDEFINED_LENGTH = 0xffffffff;
const ELEMENTS_TO_CHECK = 4;
/** How many leading junk bytes we tolerate; real-world cases have 0 or 1. */
export const MAX_LEADING_BYTES = 8;

export interface RawDatasetGuess {
  /** Offset of the first element. */
  readonly offset: number;
  /** Encoding of the elements that follow (always little endian; big endian raw datasets are not guessed). */
  readonly transferSyntaxUid: typeof EXPLICIT_VR_LITTLE_ENDIAN | typeof IMPLICIT_VR_LITTLE_ENDIAN;
  /** True when the data starts with a group 0002 file meta header (Part 10 minus preamble and 'DICM'). */
  readonly startsWithFileMeta: boolean;
}

function u16(b: Uint8Array, p: number): number {
  return (b[p] ?? 0) | ((b[p + 1] ?? 0) << 8);
}

function u32(b: Uint8Array, p: number): number {
  return (u16(b, p) + u16(b, p + 2) * 0x10000) >>> 0;
}

/** Number of well-formed elements from `start`, or 0 if the structure breaks before enough were seen. */
function plausibleElements(b: Uint8Array, start: number, explicit: boolean, firstGroupMustBeEven: boolean): number {
  let pos = start;
  let previousTag = -1;
  let count = 0;
  while (count < ELEMENTS_TO_CHECK) {
    if (pos === b.length && count >= 2) return count;
    if (pos + 8 > b.length) return 0;
    const group = u16(b, pos);
    const tag = group * 0x10000 + u16(b, pos + 2);
    // Top-level tags ascend strictly, the first one is a standard (even) group, and item delimiters never appear.
    if (tag <= previousTag || group === 0xfffe || (firstGroupMustBeEven && count === 0 && group % 2 === 1)) return 0;
    let headerLength = 8;
    let length: number;
    if (explicit) {
      const vr = String.fromCharCode(b[pos + 4] ?? 0, b[pos + 5] ?? 0);
      if (!DICOM_VRS.has(vr)) return 0;
      if (LONG_VRS.has(vr)) {
        if (pos + 12 > b.length || u16(b, pos + 6) !== 0) return 0;
        length = u32(b, pos + 8);
        headerLength = 12;
      } else {
        length = u16(b, pos + 6);
      }
    } else {
      length = u32(b, pos + 4);
    }
    count++;
    // An undefined-length sequence cannot be skipped without parsing it; what we saw so far has to suffice.
    if (length === UNDEFINED_LENGTH) return count >= 2 ? count : 0;
    if (length % 2 === 1) return 0;
    pos += headerLength + length;
    if (pos > b.length) return 0;
    previousTag = tag;
  }
  return count;
}

/** Guesses where a bare dataset starts and how it is encoded; undefined means "not DICOM as far as we can tell". */
export function guessRawDataset(
  bytes: Uint8Array,
  options: { maxLeadingBytes?: number; afterFileMeta?: boolean } = {},
): RawDatasetGuess | undefined {
  // After a real file meta header we already know this is DICOM, so the private-first-tag guard is relaxed.
  const afterFileMeta = options.afterFileMeta ?? false;
  const maxLeadingBytes = afterFileMeta ? 0 : (options.maxLeadingBytes ?? MAX_LEADING_BYTES);
  for (let offset = 0; offset <= maxLeadingBytes && offset + 8 <= bytes.length; offset++) {
    // Explicit first: an implicit walk over explicit data reads VR characters as huge lengths and fails anyway.
    for (const explicit of [true, false]) {
      if (plausibleElements(bytes, offset, explicit, !afterFileMeta) > 0) {
        return {
          offset,
          transferSyntaxUid: explicit ? EXPLICIT_VR_LITTLE_ENDIAN : IMPLICIT_VR_LITTLE_ENDIAN,
          startsWithFileMeta: u16(bytes, offset) === 0x0002,
        };
      }
    }
  }
  return undefined;
}

/** End offset of an explicit little-endian group 0002 starting at `start` (used when the meta lacks a syntax). */
export function endOfFileMeta(bytes: Uint8Array, start: number): number {
  let pos = start;
  while (pos + 8 <= bytes.length && u16(bytes, pos) === 0x0002) {
    const vr = String.fromCharCode(bytes[pos + 4] ?? 0, bytes[pos + 5] ?? 0);
    if (LONG_VRS.has(vr)) {
      if (pos + 12 > bytes.length) break;
      pos += 12 + u32(bytes, pos + 8);
    } else {
      pos += 8 + u16(bytes, pos + 6);
    }
  }
  return Math.min(pos, bytes.length);
}
