import { syntheticUid } from './rng.js';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './writer.js';

/**
 * Writes label masks as a BINARY DICOM Segmentation (PS3.3 A.51) in Explicit VR Little Endian: one 1-bit frame
 * per (segment, source image) that has pixels, frames bit-packed back to back, each frame tied to its source
 * image by a Derivation Image Functional Group. Frames are ordered by segment, then by source image; the
 * dimensions are Referenced Segment Number and the image's position in the given list (Stack ID "1").
 */

export const SEGMENTATION_STORAGE = '1.2.840.10008.5.1.4.1.1.66.4';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

export interface SegCode {
  readonly value: string;
  readonly scheme: string;
  readonly meaning: string;
}

/** SNOMED CT "Morphologically altered structure" / "Lesion" (CID 7150 / 7151). */
export const LESION_CATEGORY: SegCode = { value: '49755003', scheme: 'SCT', meaning: 'Morphologically Altered Structure' };
export const LESION_TYPE: SegCode = { value: '52988006', scheme: 'SCT', meaning: 'Lesion' };

export interface SegSegment {
  /** The label value in the masks, 1..255; segments are numbered 1, 2, 3... as the standard requires. */
  readonly number: number;
  readonly label: string;
  readonly algorithmType?: 'AUTOMATIC' | 'SEMIAUTOMATIC' | 'MANUAL';
  readonly category?: SegCode;
  readonly type?: SegCode;
}

export const DEFAULT_SEGMENTS: readonly SegSegment[] = [{ number: 1, label: 'lesion' }];

/** Where a source image lies (classic image attributes); written as Plane Position / Orientation and Pixel Measures. */
export interface SegImageGeometry {
  readonly imagePositionPatient: readonly [number, number, number];
  readonly imageOrientationPatient: readonly [number, number, number, number, number, number];
  /** [between rows, between columns], mm, as Pixel Spacing (0028,0030). */
  readonly pixelSpacing: readonly [number, number];
  /** Slice Thickness (0018,0050), mm: Pixel Measures needs it whenever it is written. */
  readonly sliceThickness: number;
}

export interface SegSourceImage {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly rows: number;
  readonly columns: number;
  /** rows * columns labels, row-major: 0 background, else a segment number. */
  readonly labels: Uint8Array;
  /** All images or none; needs frameOfReferenceUid. */
  readonly geometry?: SegImageGeometry;
}

export interface SegSpec {
  readonly studyInstanceUid: string;
  readonly patientName: string;
  readonly patientId: string;
  /** DICOM DA (YYYYMMDD); also the content date. */
  readonly studyDate: string;
  readonly studyId?: string;
  readonly accessionNumber?: string;
  readonly frameOfReferenceUid?: string;
  readonly images: readonly SegSourceImage[];
  readonly segments?: readonly SegSegment[];
  readonly seriesNumber?: number;
  readonly instanceNumber?: number;
  /** Derived from the study and source image UIDs when absent, so reruns write the same file. */
  readonly seriesInstanceUid?: string;
  readonly sopInstanceUid?: string;
  readonly manufacturer?: string;
  readonly algorithmName?: string;
}

// ---- minimal Explicit VR Little Endian encoder (the image writer's helpers are private to it) ----

interface Element {
  readonly tag: number;
  readonly vr: string;
  readonly value?: Uint8Array;
  readonly items?: readonly (readonly Element[])[];
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const MAX_LENGTH: Readonly<Record<string, number>> = { AE: 16, CS: 16, DA: 8, DS: 16, IS: 12, LO: 64, PN: 64, SH: 16, TM: 14, UI: 64 };
const UID_PATTERN = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
const ascii = new TextEncoder();

function tagName(tag: number): string {
  const hex = (tag >>> 0).toString(16).padStart(8, '0').toUpperCase();
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}

/** Strings padded to even length: UI with NUL, the rest with a space (PS3.5 6.2); each value within its VR's length. */
function str(tag: number, vr: string, value: string): Element {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new RangeError(`${tagName(tag)} must be printable ASCII: ${JSON.stringify(value)}`);
  const max = MAX_LENGTH[vr];
  if (max !== undefined && value.split('\\').some((v) => v.length > max)) throw new RangeError(`${tagName(tag)} value longer than ${max} characters for ${vr}: ${value}`);
  if (vr === 'UI' && !value.split('\\').every((v) => UID_PATTERN.test(v))) throw new RangeError(`${tagName(tag)} is not a valid UID: ${value}`);
  return { tag, vr, value: ascii.encode(value.length % 2 === 1 ? value + (vr === 'UI' ? '\0' : ' ') : value) };
}

function binary(tag: number, vr: 'US' | 'UL' | 'AT', values: readonly number[]): Element {
  const size = vr === 'US' ? 2 : 4;
  const out = new Uint8Array(values.length * size);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => {
    if (vr === 'US') view.setUint16(i * 2, v, true);
    else if (vr === 'UL') view.setUint32(i * 4, v, true);
    else {
      // AT: group then element, each a little-endian 16-bit word.
      view.setUint16(i * 4, v >>> 16, true);
      view.setUint16(i * 4 + 2, v & 0xffff, true);
    }
  });
  return { tag, vr, value: out };
}

/** Decimal String of at most 16 characters. */
function ds(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`DS value must be finite, got ${value}`);
  for (let digits = 12; digits >= 1; digits--) {
    const candidate = String(Number(value.toPrecision(digits)));
    if (candidate.length <= 16) return candidate;
  }
  throw new RangeError(`cannot encode ${value} as DS`);
}

const el = (tag: number, vr: string, value: Uint8Array): Element => ({ tag, vr, value });
const seq = (tag: number, ...items: (readonly Element[])[]): Element => ({ tag, vr: 'SQ', items });
const code = (tag: number, c: SegCode): Element =>
  seq(tag, [str(0x00080100, 'SH', c.value), str(0x00080102, 'SH', c.scheme), str(0x00080104, 'LO', c.meaning)]);

function header(tag: number, vr: string, length: number): Uint8Array {
  const long = LONG_VRS.has(vr);
  const out = new Uint8Array(long ? 12 : 8);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, true);
  view.setUint16(2, tag & 0xffff, true);
  out[4] = vr.charCodeAt(0);
  out[5] = vr.charCodeAt(1);
  if (long) view.setUint32(8, length, true);
  else {
    if (length > 0xffff) throw new RangeError(`value of ${tagName(tag)} too long for ${vr}`);
    view.setUint16(6, length, true);
  }
  return out;
}

/** Encodes a dataset (sorted by tag) with defined lengths throughout, items included. */
function encode(elements: readonly Element[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (const e of [...elements].sort((a, b) => (a.tag >>> 0) - (b.tag >>> 0))) {
    if (e.items !== undefined) {
      const body = e.items.flatMap((item) => {
        const content = encode(item);
        const itemHeader = new Uint8Array(8);
        const view = new DataView(itemHeader.buffer);
        view.setUint16(0, 0xfffe, true);
        view.setUint16(2, 0xe000, true);
        view.setUint32(4, byteLength(content), true);
        return [itemHeader, ...content];
      });
      chunks.push(header(e.tag, 'SQ', byteLength(body)), ...body);
      continue;
    }
    const value = e.value ?? new Uint8Array(0);
    const padded = value.length % 2 === 1 ? concat([value, new Uint8Array(1)]) : value;
    chunks.push(header(e.tag, e.vr, padded.length), padded);
  }
  return chunks;
}

const byteLength = (chunks: readonly Uint8Array[]): number => chunks.reduce((n, c) => n + c.length, 0);

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(byteLength(chunks));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

// ---- the Segmentation ----

interface Frame {
  readonly segment: number;
  readonly image: number;
}

function validate(spec: SegSpec, segments: readonly SegSegment[]): void {
  const [first] = spec.images;
  if (first === undefined) throw new RangeError('a Segmentation needs at least one source image');
  const { rows, columns } = first;
  if (!Number.isInteger(rows) || !Number.isInteger(columns) || rows < 1 || columns < 1 || rows > 0xffff || columns > 0xffff) {
    throw new RangeError(`invalid image size ${rows} x ${columns}`);
  }
  segments.forEach((s, i) => {
    if (s.number !== i + 1) throw new RangeError(`segments must be numbered 1, 2, 3... in order; item ${i + 1} is ${s.number}`);
    if (s.number > 255) throw new RangeError('at most 255 segments fit an 8-bit label mask');
  });
  const withGeometry = spec.images.filter((image) => image.geometry !== undefined).length;
  if (withGeometry !== 0 && withGeometry !== spec.images.length) throw new RangeError('give a geometry for every source image or for none');
  if (withGeometry > 0 && spec.frameOfReferenceUid === undefined) throw new RangeError('source image geometry needs a frameOfReferenceUid');
  const seen = new Set<string>();
  for (const image of spec.images) {
    if (seen.has(image.sopInstanceUid)) throw new RangeError(`source image ${image.sopInstanceUid} is listed twice`);
    seen.add(image.sopInstanceUid);
    if (image.rows !== rows || image.columns !== columns) {
      throw new RangeError(`source image ${image.sopInstanceUid} is ${image.rows} x ${image.columns}; all images of one Segmentation must be ${rows} x ${columns}`);
    }
    if (image.labels.length !== rows * columns) throw new RangeError(`labels of ${image.sopInstanceUid} hold ${image.labels.length} values, expected ${rows * columns}`);
    for (const label of image.labels) {
      if (label > segments.length) throw new RangeError(`labels of ${image.sopInstanceUid} hold ${label}, which is no segment (1..${segments.length})`);
    }
  }
}

/** Frames for every (segment, image) with at least one pixel; one empty frame if there are none, as NumberOfFrames >= 1. */
function planFrames(spec: SegSpec, segments: readonly SegSegment[]): Frame[] {
  const frames: Frame[] = [];
  for (const { number } of segments) {
    spec.images.forEach((image, i) => {
      if (image.labels.includes(number)) frames.push({ segment: number, image: i });
    });
  }
  return frames.length > 0 ? frames : [{ segment: 1, image: 0 }];
}

/** Bit-packs frames back to back, first pixel in the least significant bit, no padding between frames (PS3.5 8.1.1). */
function packFrames(spec: SegSpec, frames: readonly Frame[], pixels: number): Uint8Array {
  const bytes = Math.ceil((frames.length * pixels) / 8);
  const out = new Uint8Array(bytes + (bytes % 2));
  frames.forEach(({ segment, image }, f) => {
    const labels = spec.images[image]?.labels ?? new Uint8Array(0);
    for (let p = 0; p < pixels; p++) {
      if (labels[p] !== segment) continue;
      const bit = f * pixels + p;
      out[bit >> 3] = (out[bit >> 3] ?? 0) | (1 << (bit & 7));
    }
  });
  return out;
}

function geometryGroups(g: SegImageGeometry): { orientation: Element; measures: Element } {
  const measures = seq(0x00289110, [str(0x00280030, 'DS', g.pixelSpacing.map(ds).join('\\')), str(0x00180050, 'DS', ds(g.sliceThickness))]);
  return { orientation: seq(0x00209116, [str(0x00200037, 'DS', g.imageOrientationPatient.map(ds).join('\\'))]), measures };
}

function perFrameItem(spec: SegSpec, frame: Frame, sharedGeometry: boolean): Element[] {
  const image = spec.images[frame.image];
  if (image === undefined) throw new RangeError(`frame refers to image ${frame.image}, which does not exist`);
  const source = [
    str(0x00081150, 'UI', image.sopClassUid),
    str(0x00081155, 'UI', image.sopInstanceUid),
    str(0x0028135a, 'CS', 'YES'),
    code(0x0040a170, { value: '121322', scheme: 'DCM', meaning: 'Source image for image processing operation' }),
  ];
  const item: Element[] = [
    seq(0x00089124, [seq(0x00082112, source), code(0x00089215, { value: '113076', scheme: 'DCM', meaning: 'Segmentation' })]),
    seq(0x00209111, [binary(0x00209157, 'UL', [frame.segment, frame.image + 1]), str(0x00209056, 'SH', '1'), binary(0x00209057, 'UL', [frame.image + 1])]),
    seq(0x0062000a, [binary(0x0062000b, 'US', [frame.segment])]),
  ];
  const g = image.geometry;
  if (g !== undefined) {
    item.push(seq(0x00209113, [str(0x00200032, 'DS', g.imagePositionPatient.map(ds).join('\\'))]));
    if (!sharedGeometry) {
      const { orientation, measures } = geometryGroups(g);
      item.push(orientation, measures);
    }
  }
  return item;
}

function segmentItem(s: SegSegment, algorithmName: string): Element[] {
  const algorithmType = s.algorithmType ?? 'AUTOMATIC';
  return [
    code(0x00620003, s.category ?? LESION_CATEGORY),
    binary(0x00620004, 'US', [s.number]),
    str(0x00620005, 'LO', s.label),
    str(0x00620008, 'CS', algorithmType),
    // Segment Algorithm Name is required unless the segment was drawn by hand.
    ...(algorithmType === 'MANUAL' ? [] : [str(0x00620009, 'LO', algorithmName)]),
    code(0x0062000f, s.type ?? LESION_TYPE),
  ];
}

/** Encodes the label masks of `spec.images` as a complete Part 10 BINARY Segmentation. */
export function writeSegmentation(spec: SegSpec): Uint8Array {
  const segments = spec.segments ?? DEFAULT_SEGMENTS;
  validate(spec, segments);
  const sources = spec.images.map((image) => image.sopInstanceUid);
  const sopInstanceUid = spec.sopInstanceUid ?? syntheticUid('federa-seg', spec.studyInstanceUid, ...sources, 'instance');
  const seriesInstanceUid = spec.seriesInstanceUid ?? syntheticUid('federa-seg', spec.studyInstanceUid, ...sources, 'series');
  const dimensionUid = syntheticUid('federa-seg', sopInstanceUid, 'dimension-organization');
  const { rows, columns } = spec.images[0] ?? { rows: 0, columns: 0 };
  const frames = planFrames(spec, segments);
  const geometries = spec.images.flatMap((image) => (image.geometry === undefined ? [] : [image.geometry]));
  const [firstGeometry] = geometries;
  // Orientation and spacing go to the shared group when every image has the same; positions are always per frame.
  const sameAcross = (pick: (g: SegImageGeometry) => unknown): boolean => geometries.every((g) => JSON.stringify(pick(g)) === JSON.stringify(pick(firstGeometry ?? g)));
  const sharedGeometry = firstGeometry !== undefined && sameAcross((g) => [g.imageOrientationPatient, g.pixelSpacing, g.sliceThickness]);
  const shared: Element[] = [];
  if (sharedGeometry) {
    const { orientation, measures } = geometryGroups(firstGeometry);
    shared.push(orientation, measures);
  }
  const bySeries = new Map<string, SegSourceImage[]>();
  for (const image of spec.images) bySeries.set(image.seriesInstanceUid, [...(bySeries.get(image.seriesInstanceUid) ?? []), image]);
  const manufacturer = spec.manufacturer ?? 'Federa Simulator';
  const algorithmName = spec.algorithmName ?? 'Federa phantom generator';
  const dimension = (pointer: number, group: number, label: string): Element[] => [
    str(0x00209164, 'UI', dimensionUid),
    binary(0x00209165, 'AT', [pointer]),
    binary(0x00209167, 'AT', [group]),
    str(0x00209421, 'LO', label),
  ];

  const dataset: Element[] = [
    // SOP Common, General Study, Patient
    str(0x00080016, 'UI', SEGMENTATION_STORAGE),
    str(0x00080018, 'UI', sopInstanceUid),
    str(0x00080020, 'DA', spec.studyDate),
    str(0x00080023, 'DA', spec.studyDate),
    str(0x00080030, 'TM', '120000'),
    str(0x00080033, 'TM', '120000'),
    str(0x00080050, 'SH', spec.accessionNumber ?? ''),
    str(0x00080090, 'PN', ''),
    str(0x00100010, 'PN', spec.patientName),
    str(0x00100020, 'LO', spec.patientId),
    str(0x00100030, 'DA', ''),
    str(0x00100040, 'CS', ''),
    str(0x0020000d, 'UI', spec.studyInstanceUid),
    str(0x00200010, 'SH', spec.studyId ?? ''),
    // General Series + Segmentation Series
    str(0x00080060, 'CS', 'SEG'),
    str(0x0020000e, 'UI', seriesInstanceUid),
    str(0x00200011, 'IS', String(spec.seriesNumber ?? 100)),
    // General + Enhanced General Equipment
    str(0x00080070, 'LO', manufacturer),
    str(0x00081090, 'LO', 'Federa SEG writer'),
    str(0x00181000, 'LO', '1'),
    str(0x00181020, 'LO', IMPLEMENTATION_VERSION_NAME),
    // General Image, Segmentation Image (with Content Identification), Image Pixel
    str(0x00080008, 'CS', 'DERIVED\\PRIMARY'),
    str(0x00200013, 'IS', String(spec.instanceNumber ?? 1)),
    str(0x00700080, 'CS', 'LESION_MASK'),
    str(0x00700081, 'LO', 'Synthetic ground truth'),
    str(0x00700084, 'PN', ''),
    str(0x00282110, 'CS', '00'),
    str(0x00620001, 'CS', 'BINARY'),
    str(0x00620013, 'CS', 'NO'),
    seq(0x00620002, ...segments.map((s) => segmentItem(s, algorithmName))),
    binary(0x00280002, 'US', [1]),
    str(0x00280004, 'CS', 'MONOCHROME2'),
    binary(0x00280010, 'US', [rows]),
    binary(0x00280011, 'US', [columns]),
    binary(0x00280100, 'US', [1]),
    binary(0x00280101, 'US', [1]),
    binary(0x00280102, 'US', [0]),
    binary(0x00280103, 'US', [0]),
    // Multi-frame Functional Groups and Dimension
    str(0x00280008, 'IS', String(frames.length)),
    seq(0x52009229, shared),
    seq(0x52009230, ...frames.map((frame) => perFrameItem(spec, frame, sharedGeometry))),
    seq(0x00209221, [str(0x00209164, 'UI', dimensionUid)]),
    seq(0x00209222, dimension(0x0062000b, 0x0062000a, 'Segment Number'), dimension(0x00209057, 0x00209111, 'In-Stack Position Number')),
    // Common Instance Reference: every source image, so images without lesion pixels read as all-background.
    seq(0x00081115, ...[...bySeries].map(([series, images]) => [
      seq(0x0008114a, ...images.map((image) => [str(0x00081150, 'UI', image.sopClassUid), str(0x00081155, 'UI', image.sopInstanceUid)])),
      str(0x0020000e, 'UI', series),
    ])),
    el(0x7fe00010, 'OB', packFrames(spec, frames, rows * columns)),
  ];
  if (spec.frameOfReferenceUid !== undefined) dataset.push(str(0x00200052, 'UI', spec.frameOfReferenceUid), str(0x00201040, 'LO', ''));
  // Patient Orientation (type 2C) is needed where no plane orientation tells how the image lies.
  if (firstGeometry === undefined) dataset.push(str(0x00200020, 'CS', ''));

  const metaBody = encode([
    el(0x00020001, 'OB', Uint8Array.from([0x00, 0x01])),
    str(0x00020002, 'UI', SEGMENTATION_STORAGE),
    str(0x00020003, 'UI', sopInstanceUid),
    str(0x00020010, 'UI', EXPLICIT_VR_LITTLE_ENDIAN),
    str(0x00020012, 'UI', IMPLEMENTATION_CLASS_UID),
    str(0x00020013, 'SH', IMPLEMENTATION_VERSION_NAME),
  ]);
  const preamble = new Uint8Array(132);
  preamble.set(ascii.encode('DICM'), 128);
  return concat([preamble, ...encode([binary(0x00020000, 'UL', [byteLength(metaBody)])]), ...metaBody, ...encode(dataset)]);
}
