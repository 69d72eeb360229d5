import { syntheticUid } from './rng.js';

/**
 * Minimal DICOM Part 10 writer for synthetic single-frame greyscale images (16 bits allocated). It writes only
 * what a reader and our pipeline need plus the patient/study/series attributes real archives expect, all
 * filled with obviously fake values. Not a general-purpose DICOM encoder.
 */

export type SopClass = 'secondary-capture' | 'ct' | 'mr';
export type WriterTransferSyntax = 'explicit-vr-little-endian' | 'implicit-vr-little-endian';

export const SOP_CLASS_UIDS: Readonly<Record<SopClass, string>> = {
  'secondary-capture': '1.2.840.10008.5.1.4.1.1.7',
  ct: '1.2.840.10008.5.1.4.1.1.2',
  mr: '1.2.840.10008.5.1.4.1.1.4',
};

export const WRITER_TRANSFER_SYNTAX_UIDS: Readonly<Record<WriterTransferSyntax, string>> = {
  'explicit-vr-little-endian': '1.2.840.10008.1.2.1',
  'implicit-vr-little-endian': '1.2.840.10008.1.2',
};

/** Value 3 uses each IOD's own defined terms. */
const IMAGE_TYPE: Readonly<Record<SopClass, string>> = {
  'secondary-capture': 'DERIVED\\SECONDARY',
  ct: 'ORIGINAL\\PRIMARY\\AXIAL',
  mr: 'ORIGINAL\\PRIMARY\\OTHER',
};

/** Identifies files written by this simulator (stable across runs). */
export const IMPLEMENTATION_CLASS_UID = syntheticUid('federa-sim', 'implementation-class');
export const IMPLEMENTATION_VERSION_NAME = 'FEDERA_SIM_1';

export interface SyntheticImageSpec {
  sopClass: SopClass;
  transferSyntax: WriterTransferSyntax;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  patientName: string;
  patientId: string;
  /** DICOM DA (YYYYMMDD). */
  studyDate: string;
  studyId: string;
  seriesNumber: number;
  instanceNumber: number;
  modality: string;
  institutionName: string;
  rows: number;
  columns: number;
  photometricInterpretation: 'MONOCHROME1' | 'MONOCHROME2';
  /** Bits Allocated is always 16; Bits Stored 1..16 with High Bit = Bits Stored - 1. */
  bitsStored: number;
  pixelRepresentation: 0 | 1;
  rescaleSlope: number;
  rescaleIntercept: number;
  windowCenter: number;
  windowWidth: number;
  /** Stored values, row-major; Int16Array when pixelRepresentation is 1. */
  pixels: Uint16Array | Int16Array;
  /** CT/MR only; derived from the study UID when absent. */
  frameOfReferenceUid?: string;
}

interface Element {
  readonly group: number;
  readonly element: number;
  readonly vr: string;
  readonly value: Uint8Array;
}

/** VRs with 2 reserved bytes and a 32-bit length in explicit VR (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
const ascii = new TextEncoder();

/** Strings are padded to even length: UI with NUL, everything else with a space (PS3.5 6.2). */
function text(vr: string, value: string): Uint8Array {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new RangeError(`${vr} value must be printable ASCII: ${JSON.stringify(value)}`);
  const bytes = ascii.encode(value.length % 2 === 1 ? value + (vr === 'UI' ? '\0' : ' ') : value);
  return bytes;
}

function uid(value: string, what: string): Uint8Array {
  if (value.length > 64 || !UID_PATTERN.test(value)) throw new RangeError(`${what} is not a valid UID: ${value}`);
  return text('UI', value);
}

function us(value: number): Uint8Array {
  const out = new Uint8Array(2);
  new DataView(out.buffer).setUint16(0, value, true);
  return out;
}

function ul(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

/** Decimal String, at most 16 characters. */
function ds(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`DS value must be finite, got ${value}`);
  for (let digits = 10; digits >= 1; digits--) {
    const candidate = String(Number(value.toPrecision(digits)));
    if (candidate.length <= 16) return candidate;
  }
  throw new RangeError(`cannot encode ${value} as DS`);
}

const el = (group: number, element: number, vr: string, value: Uint8Array): Element => ({ group, element, vr, value });
const str = (group: number, element: number, vr: string, value: string): Element => el(group, element, vr, text(vr, value));

function encodeElements(elements: readonly Element[], explicit: boolean): Uint8Array {
  const sorted = [...elements].sort((a, b) => a.group - b.group || a.element - b.element);
  const chunks: Uint8Array[] = [];
  for (const e of sorted) {
    const value = e.value.length % 2 === 1 ? Uint8Array.from([...e.value, 0]) : e.value;
    const long = LONG_VRS.has(e.vr);
    const headerLength = explicit ? (long ? 12 : 8) : 8;
    const header = new Uint8Array(headerLength);
    const view = new DataView(header.buffer);
    view.setUint16(0, e.group, true);
    view.setUint16(2, e.element, true);
    if (!explicit) {
      view.setUint32(4, value.length, true);
    } else {
      header[4] = e.vr.charCodeAt(0);
      header[5] = e.vr.charCodeAt(1);
      if (long) {
        view.setUint32(8, value.length, true);
      } else {
        if (value.length > 0xffff) throw new RangeError(`value of (${e.group.toString(16)},${e.element.toString(16)}) too long for ${e.vr}`);
        view.setUint16(6, value.length, true);
      }
    }
    chunks.push(header, value);
  }
  return concat(chunks);
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

function validate(spec: SyntheticImageSpec): void {
  const { rows, columns, bitsStored, pixels } = spec;
  if (!Number.isInteger(rows) || !Number.isInteger(columns) || rows < 1 || columns < 1 || rows > 0xffff || columns > 0xffff) {
    throw new RangeError(`invalid image size ${rows} x ${columns}`);
  }
  if (pixels.length !== rows * columns) throw new RangeError(`pixels has ${pixels.length} values, expected ${rows * columns}`);
  if (!Number.isInteger(bitsStored) || bitsStored < 1 || bitsStored > 16) throw new RangeError(`Bits Stored must be 1..16, got ${bitsStored}`);
  const signed = spec.pixelRepresentation === 1;
  if (signed !== pixels instanceof Int16Array) throw new RangeError('use Int16Array for signed pixels and Uint16Array for unsigned');
  const min = signed ? -(2 ** (bitsStored - 1)) : 0;
  const max = signed ? 2 ** (bitsStored - 1) - 1 : 2 ** bitsStored - 1;
  for (const v of pixels) {
    if (v < min || v > max) throw new RangeError(`pixel value ${v} does not fit in ${bitsStored} ${signed ? 'signed' : 'unsigned'} bits`);
  }
  if (!(spec.windowWidth >= 1)) throw new RangeError(`Window Width must be >= 1, got ${spec.windowWidth}`);
  if (spec.rescaleSlope === 0) throw new RangeError('Rescale Slope must not be 0');
}

/**
 * The CT and MR IODs require frame-of-reference, image-plane and acquisition attributes that a phantom has no
 * real values for; we write neutral geometry (1 mm pixels, axial, origin) and leave type-2 acquisition
 * parameters empty, which the standard allows, so the files still validate against their IOD.
 */
function acquisitionElements(spec: SyntheticImageSpec): Element[] {
  if (spec.sopClass === 'secondary-capture') return [];
  const frameOfReference = spec.frameOfReferenceUid ?? syntheticUid(spec.studyInstanceUid, 'frame-of-reference');
  const common = [
    str(0x0018, 0x0050, 'DS', '1'),
    str(0x0018, 0x5100, 'CS', 'HFS'),
    str(0x0020, 0x0012, 'IS', ''),
    str(0x0020, 0x0032, 'DS', '0\\0\\0'),
    str(0x0020, 0x0037, 'DS', '1\\0\\0\\0\\1\\0'),
    el(0x0020, 0x0052, 'UI', uid(frameOfReference, 'Frame of Reference UID')),
    str(0x0020, 0x1040, 'LO', ''),
    str(0x0028, 0x0030, 'DS', '1\\1'),
  ];
  if (spec.sopClass === 'ct') return [...common, str(0x0018, 0x0060, 'DS', '')];
  return [
    ...common,
    str(0x0018, 0x0020, 'CS', 'RM'), // research mode: no real pulse sequence
    str(0x0018, 0x0021, 'CS', 'NONE'),
    str(0x0018, 0x0022, 'CS', ''),
    str(0x0018, 0x0023, 'CS', '2D'),
    str(0x0018, 0x0080, 'DS', ''),
    str(0x0018, 0x0081, 'DS', ''),
    str(0x0018, 0x0091, 'IS', ''),
  ];
}

/** Encodes one image as a complete Part 10 file (preamble, 'DICM', file meta, dataset). */
export function writeDicomPart10(spec: SyntheticImageSpec): Uint8Array {
  validate(spec);
  const sopClassUid = SOP_CLASS_UIDS[spec.sopClass];
  const transferSyntaxUid = WRITER_TRANSFER_SYNTAX_UIDS[spec.transferSyntax];

  // File meta is always explicit VR little endian, whatever the dataset uses (PS3.10 7.1).
  const metaBody = encodeElements(
    [
      el(0x0002, 0x0001, 'OB', Uint8Array.from([0x00, 0x01])),
      el(0x0002, 0x0002, 'UI', uid(sopClassUid, 'Media Storage SOP Class UID')),
      el(0x0002, 0x0003, 'UI', uid(spec.sopInstanceUid, 'SOP Instance UID')),
      el(0x0002, 0x0010, 'UI', uid(transferSyntaxUid, 'Transfer Syntax UID')),
      el(0x0002, 0x0012, 'UI', uid(IMPLEMENTATION_CLASS_UID, 'Implementation Class UID')),
      str(0x0002, 0x0013, 'SH', IMPLEMENTATION_VERSION_NAME),
    ],
    true,
  );
  const groupLength = encodeElements([el(0x0002, 0x0000, 'UL', ul(metaBody.length))], true);

  // Stored values as 16-bit little endian; signed values keep their two's complement (sign-extended) form.
  const pixelBytes = new Uint8Array(spec.pixels.length * 2);
  const pixelView = new DataView(pixelBytes.buffer);
  spec.pixels.forEach((v, i) => pixelView.setUint16(i * 2, v & 0xffff, true));

  const secondaryCapture = spec.sopClass === 'secondary-capture';
  const dataset = encodeElements(
    [
      ...acquisitionElements(spec),
      str(0x0008, 0x0008, 'CS', IMAGE_TYPE[spec.sopClass]),
      el(0x0008, 0x0016, 'UI', uid(sopClassUid, 'SOP Class UID')),
      el(0x0008, 0x0018, 'UI', uid(spec.sopInstanceUid, 'SOP Instance UID')),
      str(0x0008, 0x0020, 'DA', spec.studyDate),
      str(0x0008, 0x0030, 'TM', '120000'),
      str(0x0008, 0x0050, 'SH', ''),
      str(0x0008, 0x0060, 'CS', spec.modality),
      // SYN = "synthetic image" (PS3.3 C.8.6.1), which is exactly what these are.
      ...(secondaryCapture ? [str(0x0008, 0x0064, 'CS', 'SYN')] : []),
      str(0x0008, 0x0070, 'LO', 'Federa Simulator'),
      str(0x0008, 0x0080, 'LO', spec.institutionName),
      str(0x0008, 0x0090, 'PN', ''),
      str(0x0010, 0x0010, 'PN', spec.patientName),
      str(0x0010, 0x0020, 'LO', spec.patientId),
      str(0x0010, 0x0030, 'DA', ''),
      str(0x0010, 0x0040, 'CS', 'O'),
      el(0x0020, 0x000d, 'UI', uid(spec.studyInstanceUid, 'Study Instance UID')),
      el(0x0020, 0x000e, 'UI', uid(spec.seriesInstanceUid, 'Series Instance UID')),
      str(0x0020, 0x0010, 'SH', spec.studyId),
      str(0x0020, 0x0011, 'IS', String(spec.seriesNumber)),
      str(0x0020, 0x0013, 'IS', String(spec.instanceNumber)),
      str(0x0020, 0x0020, 'CS', ''),
      str(0x0020, 0x0060, 'CS', ''),
      el(0x0028, 0x0002, 'US', us(1)),
      str(0x0028, 0x0004, 'CS', spec.photometricInterpretation),
      el(0x0028, 0x0010, 'US', us(spec.rows)),
      el(0x0028, 0x0011, 'US', us(spec.columns)),
      el(0x0028, 0x0100, 'US', us(16)),
      el(0x0028, 0x0101, 'US', us(spec.bitsStored)),
      el(0x0028, 0x0102, 'US', us(spec.bitsStored - 1)),
      el(0x0028, 0x0103, 'US', us(spec.pixelRepresentation)),
      str(0x0028, 0x1050, 'DS', ds(spec.windowCenter)),
      str(0x0028, 0x1051, 'DS', ds(spec.windowWidth)),
      str(0x0028, 0x1052, 'DS', ds(spec.rescaleIntercept)),
      str(0x0028, 0x1053, 'DS', ds(spec.rescaleSlope)),
      // Rescale Type: "US" (unspecified) for secondary capture; CT values are Hounsfield-like; MR has none.
      ...(spec.sopClass === 'mr' ? [] : [str(0x0028, 0x1054, 'LO', secondaryCapture ? 'US' : 'HU')]),
      el(0x7fe0, 0x0010, 'OW', pixelBytes),
    ],
    spec.transferSyntax === 'explicit-vr-little-endian',
  );

  const preamble = new Uint8Array(132);
  preamble.set(ascii.encode('DICM'), 128);
  return concat([preamble, groupLength, metaBody, dataset]);
}
