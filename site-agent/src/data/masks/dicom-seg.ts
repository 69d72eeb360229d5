import type { DataSet } from 'dicom-parser';
import { defaultCodecs, type CodecRegistry } from '../dicom/codecs.js';
import { MAX_INFLATED_BYTES, parseStructure, type ParsedStructure } from '../dicom/parse.js';
import type { PixelArray } from '../dicom/pixels.js';
import { decodeDicom } from '../dicom/reader.js';
import { lookupTransferSyntax } from '../dicom/transfer-syntax.js';
import { A, fail, itemScope, items, positiveInteger, requireItems, requireText, requireUint16, text, uint16, type Scope } from './attributes.js';
import { frameSources, referencedInstances, type FrameReferenceContext } from './seg-references.js';
import type { ImageGeometry, LabelMask, MaskFile, MaskSegment, SegmentAlgorithmType } from './types.js';

/**
 * DICOM Segmentation (PS3.3 A.51, C.8.20) to label masks. Parsing, transfer syntaxes (deflate, big endian,
 * compressed fractional frames) and bit unpacking are the image reader's; this adds the Segmentation semantics.
 *
 * - BINARY: 1 bit per pixel, frames packed one after another with no padding between them (PS3.5 8.1.1).
 * - FRACTIONAL: 8 bits, 0..Maximum Fractional Value; a pixel belongs to the segment when its value is at least
 *   half the maximum (probability or occupancy >= 0.5).
 * - LABELMAP: each pixel holds a Segment Number; 0 is background.
 * Where segments overlap on one image the higher segment number wins. Source images the Common Instance Reference
 * module lists but no frame covers get an all-background mask: writers leave out empty frames.
 */

export const SEGMENTATION_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.66.4';
/** Label Map Segmentation Storage (Sup 243), the home of LABELMAP; both classes are read by Segmentation Type. */
export const LABEL_MAP_SEGMENTATION_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.66.7';
export const SEGMENTATION_SOP_CLASS_UIDS: ReadonlySet<string> = new Set([SEGMENTATION_SOP_CLASS_UID, LABEL_MAP_SEGMENTATION_SOP_CLASS_UID]);

export type SegmentationType = 'BINARY' | 'FRACTIONAL' | 'LABELMAP';

export interface ReadSegOptions {
  readonly file?: string;
  readonly codecs?: CodecRegistry;
  readonly maxInflatedBytes?: number;
  /**
   * Geometry of candidate source images by SOP Instance UID, used only for frames that name no source image: a
   * frame then belongs to the image whose pixel grid its plane position, orientation and spacing describe.
   */
  readonly sourceGeometries?: ReadonlyMap<string, ImageGeometry>;
  /**
   * Segment Label (compared trimmed, case-insensitively) to mask label; segments not named are left out (their
   * frames are not even decoded, and they cannot paint over a named one). Without it every segment keeps its
   * Segment Number as its label.
   */
  readonly segmentLabels?: ReadonlyMap<string, number>;
}

export interface SegMaskFile extends MaskFile {
  readonly kind: 'dicom-seg';
  readonly segmentationType: SegmentationType;
}

const ALGORITHM_TYPES: ReadonlySet<string> = new Set<SegmentAlgorithmType>(['AUTOMATIC', 'SEMIAUTOMATIC', 'MANUAL']);
const MAX_LABEL = 255;

interface PixelLayout {
  readonly type: SegmentationType;
  readonly rows: number;
  readonly columns: number;
  readonly frames: number;
  readonly bitsAllocated: number;
  /** FRACTIONAL only. */
  readonly maximum: number;
}

function checkValue(ds: DataSet, a: typeof A.rows, expected: readonly (number | string)[], scope: Scope, type: string): void {
  const value = typeof expected[0] === 'number' ? uint16(ds, a) : text(ds, a)?.toUpperCase();
  if (value === undefined) throw fail(scope, 'invalid', `${a.name} is missing`);
  if (!expected.includes(value)) throw fail(scope, 'invalid', `${a.name} is ${value}, but a ${type} Segmentation needs ${expected.join(' or ')}`);
}

/** Checks the Image Pixel attributes PS3.3 C.8.20.2 fixes for each Segmentation Type. */
function pixelLayout(ds: DataSet, scope: Scope): PixelLayout {
  const raw = requireText(ds, A.segmentationType, scope).toUpperCase();
  if (raw !== 'BINARY' && raw !== 'FRACTIONAL' && raw !== 'LABELMAP') {
    throw fail(scope, 'invalid', `${A.segmentationType.name} is ${raw}; expected BINARY, FRACTIONAL or LABELMAP`);
  }
  const type: SegmentationType = raw;
  checkValue(ds, A.samplesPerPixel, [1], scope, type);
  checkValue(ds, A.pixelRepresentation, [0], scope, type);
  checkValue(ds, A.photometricInterpretation, type === 'LABELMAP' ? ['MONOCHROME2', 'PALETTE COLOR'] : ['MONOCHROME2'], scope, type);
  const bits = type === 'BINARY' ? [1] : type === 'FRACTIONAL' ? [8] : [8, 16];
  checkValue(ds, A.bitsAllocated, bits, scope, type);
  const bitsAllocated = requireUint16(ds, A.bitsAllocated, scope);
  checkValue(ds, A.bitsStored, [bitsAllocated], scope, type);
  checkValue(ds, A.highBit, [bitsAllocated - 1], scope, type);
  const rows = requireUint16(ds, A.rows, scope);
  const columns = requireUint16(ds, A.columns, scope);
  if (rows === 0 || columns === 0) throw fail(scope, 'invalid', `${A.rows.name} x ${A.columns.name} is ${rows} x ${columns}`);
  // Type 1 in the Multi-frame Functional Groups module; the image reader also reads a missing one as 1, and the
  // per-frame item count below is checked against it either way.
  const frames = positiveInteger(ds, A.numberOfFrames, scope) ?? 1;
  let maximum = 0;
  if (type === 'FRACTIONAL') {
    maximum = requireUint16(ds, A.maximumFractionalValue, scope);
    if (maximum < 1 || maximum > 255) throw fail(scope, 'invalid', `${A.maximumFractionalValue.name} is ${maximum}; it must lie in 1..255 for 8-bit pixels`);
    const fractional = requireText(ds, A.segmentationFractionalType, scope).toUpperCase();
    if (fractional !== 'PROBABILITY' && fractional !== 'OCCUPANCY') {
      throw fail(scope, 'invalid', `${A.segmentationFractionalType.name} is ${fractional}; expected PROBABILITY or OCCUPANCY`);
    }
  }
  if (text(ds, A.dimensionOrganizationType)?.toUpperCase() === 'TILED_FULL') {
    throw fail(scope, 'unsupported', `${A.dimensionOrganizationType.name} TILED_FULL (slide microscopy tiles without per-frame positions) is not supported`);
  }
  return { type, rows, columns, frames, bitsAllocated, maximum };
}

function readSegments(ds: DataSet, type: SegmentationType, scope: Scope): MaskSegment[] {
  const segments = new Map<number, MaskSegment>();
  requireItems(ds, A.segmentSequence, scope).forEach((item, i) => {
    const itemAt = itemScope(scope, A.segmentSequence, i);
    const number = requireUint16(item, A.segmentNumber, itemAt);
    if (segments.has(number)) throw fail(itemAt, 'invalid', `${A.segmentNumber.name} ${number} is used by more than one segment`);
    const algorithm = requireText(item, A.segmentAlgorithmType, itemAt).toUpperCase();
    if (!ALGORITHM_TYPES.has(algorithm)) throw fail(itemAt, 'invalid', `${A.segmentAlgorithmType.name} is ${algorithm}; expected AUTOMATIC, SEMIAUTOMATIC or MANUAL`);
    // A label map may describe its background as segment 0; masks use 0 for background anyway.
    if (number === 0) {
      if (type === 'LABELMAP') return;
      throw fail(itemAt, 'invalid', `${A.segmentNumber.name} is 0; ${type} segments are numbered from 1`);
    }
    if (number > MAX_LABEL) throw fail(itemAt, 'unsupported', `${A.segmentNumber.name} ${number} does not fit an 8-bit label mask (at most ${MAX_LABEL} segments)`);
    segments.set(number, { number, label: requireText(item, A.segmentLabel, itemAt), algorithmType: algorithm as SegmentAlgorithmType });
  });
  return [...segments.values()].sort((a, b) => a.number - b.number);
}

/** Native Pixel Data must hold exactly the declared frames (plus the pad byte to even length): no more, no less. */
function checkPixelDataLength(parsed: ParsedStructure, layout: PixelLayout, scope: Scope): void {
  const element = parsed.dataSet.elements[A.pixelData.tag];
  if (element === undefined) throw fail(scope, 'invalid', `${A.pixelData.name} is missing`);
  if (element.encapsulatedPixelData === true || lookupTransferSyntax(parsed.transferSyntaxUid)?.pixels !== 'native') return;
  const needed = Math.ceil((layout.frames * layout.rows * layout.columns * layout.bitsAllocated) / 8);
  const padded = needed + (needed % 2);
  if (element.length !== needed && element.length !== padded) {
    throw fail(
      scope,
      'invalid',
      `${A.pixelData.name} holds ${element.length} bytes, but ${A.numberOfFrames.name} ${layout.frames} of ${layout.rows} x ${layout.columns} at ${layout.bitsAllocated} bit(s) need ${needed}${padded !== needed ? ` (${padded} padded)` : ''}`,
    );
  }
}

/** The segment each frame shows (BINARY / FRACTIONAL): per-frame Segment Identification, else the shared one. */
function frameSegment(frame: DataSet, shared: DataSet | undefined, index: number, known: ReadonlySet<number>, scope: Scope): number {
  const identification = items(frame, A.segmentIdentificationSequence)?.[0] ?? (shared === undefined ? undefined : items(shared, A.segmentIdentificationSequence)?.[0]);
  const number = identification === undefined ? undefined : uint16(identification, A.referencedSegmentNumber);
  if (number === undefined) {
    throw fail(scope, 'invalid', `frame ${index + 1}: no ${A.referencedSegmentNumber.name} in a ${A.segmentIdentificationSequence.name} of the Per-frame or Shared Functional Groups`);
  }
  if (!known.has(number)) throw fail(scope, 'invalid', `frame ${index + 1} references segment ${number}, which ${A.segmentSequence.name} does not describe`);
  return number;
}

/**
 * Paints one decoded frame into a mask as `labelOf` maps segment numbers (0: left out); higher labels win where
 * segments overlap.
 */
function paint(labels: Uint8Array, pixels: PixelArray, layout: PixelLayout, segment: number, labelOf: ReadonlyMap<number, number>, scope: Scope, index: number): void {
  for (let p = 0; p < labels.length; p++) {
    const value = pixels[p] ?? 0;
    if (value === 0) continue;
    let number: number;
    if (layout.type === 'LABELMAP') {
      if (!labelOf.has(value)) throw fail(scope, 'invalid', `frame ${index + 1} holds pixel value ${value}, which is no segment of ${A.segmentSequence.name}`);
      number = value;
    } else if (layout.type === 'FRACTIONAL') {
      if (value > layout.maximum) throw fail(scope, 'invalid', `frame ${index + 1} holds ${value}, above ${A.maximumFractionalValue.name} ${layout.maximum}`);
      if (value * 2 < layout.maximum) continue;
      number = segment;
    } else {
      number = segment;
    }
    const label = labelOf.get(number) ?? 0;
    if (label > (labels[p] ?? 0)) labels[p] = label;
  }
}

/**
 * Mask label per Segment Number (0 for a segment left out), and the segments as the masks label them: with
 * `segmentLabels`, only the named ones, numbered by their label (segments sharing a label listed together).
 */
function segmentLabelling(segments: readonly MaskSegment[], segmentLabels: ReadonlyMap<string, number> | undefined, scope: Scope): { labelOf: Map<number, number>; kept: MaskSegment[] } {
  if (segmentLabels === undefined) return { labelOf: new Map(segments.map((s) => [s.number, s.number])), kept: [...segments] };
  const byName = new Map([...segmentLabels].map(([name, label]) => [name.trim().toLowerCase(), label]));
  const labelOf = new Map<number, number>();
  const byLabel = new Map<number, MaskSegment[]>();
  for (const segment of segments) {
    const label = byName.get(segment.label.trim().toLowerCase()) ?? 0;
    if (!Number.isInteger(label) || label < 0 || label > MAX_LABEL) throw fail(scope, 'unsupported', `segment "${segment.label}" would get label ${label}, outside 1..${MAX_LABEL}`);
    labelOf.set(segment.number, label);
    if (label > 0) byLabel.set(label, [...(byLabel.get(label) ?? []), segment]);
  }
  const kept = [...byLabel]
    .sort(([a], [b]) => a - b)
    .map(([number, members]) => ({ number, label: members.map((m) => m.label).join(' | '), algorithmType: members[0]?.algorithmType }));
  return { labelOf, kept };
}

/** Reads a Segmentation that was already parsed (readMaskFile sniffs with the same parse). */
export function decodeSegDataset(bytes: Uint8Array, parsed: ParsedStructure, options: ReadSegOptions = {}): SegMaskFile {
  const file = options.file ?? '<memory>';
  const scope: Scope = { file };
  const ds = parsed.dataSet;
  const sopClass = text(ds, A.sopClassUid);
  if (sopClass === undefined || !SEGMENTATION_SOP_CLASS_UIDS.has(sopClass)) {
    throw fail(scope, 'not-a-mask', `${A.sopClassUid.name} is ${sopClass ?? 'missing'}, not Segmentation Storage (${SEGMENTATION_SOP_CLASS_UID}) or Label Map Segmentation Storage (${LABEL_MAP_SEGMENTATION_SOP_CLASS_UID})`);
  }
  const layout = pixelLayout(ds, scope);
  const { labelOf, kept } = segmentLabelling(readSegments(ds, layout.type, scope), options.segmentLabels, scope);
  const known = new Set(labelOf.keys());
  const perFrame = requireItems(ds, A.perFrameFunctionalGroups, scope);
  if (perFrame.length !== layout.frames) {
    throw fail(scope, 'invalid', `${A.perFrameFunctionalGroups.name} has ${perFrame.length} items but ${A.numberOfFrames.name} is ${layout.frames}; each frame needs exactly one`);
  }
  checkPixelDataLength(parsed, layout, scope);
  const shared = items(ds, A.sharedFunctionalGroups)?.[0];
  const context: FrameReferenceContext = {
    scope,
    rows: layout.rows,
    columns: layout.columns,
    shared,
    referencedInstances: referencedInstances(ds, scope),
    sourceGeometries: options.sourceGeometries,
  };
  // Everything about the frames is checked before any pixel is decoded.
  const plan = perFrame.map((frame, index) => ({
    index,
    segment: layout.type === 'LABELMAP' ? 0 : frameSegment(frame, shared, index, known, scope),
    sources: frameSources(frame, index, context),
  }));
  const image = decodeDicom(bytes, { file, codecs: options.codecs ?? defaultCodecs, maxInflatedBytes: options.maxInflatedBytes ?? MAX_INFLATED_BYTES });
  if (image.header.numberOfFrames !== layout.frames) throw fail(scope, 'invalid', `the image reader found ${image.header.numberOfFrames} frames, ${A.numberOfFrames.name} says ${layout.frames}`);

  const masks = new Map<string, LabelMask>();
  const painted = new Map<string, number>();
  const unresolved: string[] = [];
  const maskFor = (key: string): Uint8Array => {
    const existing = masks.get(key);
    if (existing !== undefined) return existing.labels;
    const labels = new Uint8Array(layout.rows * layout.columns);
    masks.set(key, { rows: layout.rows, columns: layout.columns, labels });
    return labels;
  };
  for (const { index, segment, sources } of plan) {
    if ('unresolved' in sources) {
      unresolved.push(sources.unresolved);
      continue;
    }
    // A segment left out is not decoded; its source images still get a mask, background where nothing else paints.
    if (layout.type !== 'LABELMAP' && labelOf.get(segment) === 0) {
      for (const uid of sources.uids) maskFor(uid);
      continue;
    }
    const pixels = index === 0 ? image.pixels : image.decodeFrame(index);
    for (const uid of sources.uids) {
      // Two frames of one segment on one 2D image mean the source was really multi-frame (or the file is broken).
      const slot = `${uid}\u0000${segment}`;
      const earlier = painted.get(slot);
      if (earlier !== undefined) {
        const what = layout.type === 'LABELMAP' ? '' : ` segment ${segment} of`;
        throw fail(scope, 'invalid', `frames ${earlier + 1} and ${index + 1} both hold${what} source image ${uid}`);
      }
      painted.set(slot, index);
      paint(maskFor(uid), pixels, layout, segment, labelOf, scope, index);
    }
  }
  for (const uid of context.referencedInstances) maskFor(uid);
  return { kind: 'dicom-seg', file, segmentationType: layout.type, segments: kept, masks, unresolved };
}

/** Parses and reads a DICOM Segmentation held in memory. */
export function readDicomSeg(bytes: Uint8Array, options: ReadSegOptions = {}): SegMaskFile {
  const file = options.file ?? '<memory>';
  const codecs = options.codecs ?? defaultCodecs;
  const parsed = parseStructure(bytes, { file, codecs, maxInflatedBytes: options.maxInflatedBytes ?? MAX_INFLATED_BYTES });
  return decodeSegDataset(bytes, parsed, { ...options, file, codecs });
}
