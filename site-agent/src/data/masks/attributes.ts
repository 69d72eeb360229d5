import type { DataSet } from 'dicom-parser';
import { MaskError, type MaskErrorReason } from './errors.js';

/** A DICOM attribute: the dicom-parser key and the name messages use, e.g. "Rows (0028,0010)". */
export interface Attr {
  readonly tag: string;
  readonly name: string;
}

function attr(group: number, element: number, name: string): Attr {
  const hex = (n: number): string => n.toString(16).padStart(4, '0');
  return { tag: `x${hex(group)}${hex(element)}`, name: `${name} (${hex(group).toUpperCase()},${hex(element).toUpperCase()})` };
}

export const A = {
  sopClassUid: attr(0x0008, 0x0016, 'SOP Class UID'),
  sopInstanceUid: attr(0x0008, 0x0018, 'SOP Instance UID'),
  referencedSeriesSequence: attr(0x0008, 0x1115, 'Referenced Series Sequence'),
  referencedInstanceSequence: attr(0x0008, 0x114a, 'Referenced Instance Sequence'),
  referencedSopInstanceUid: attr(0x0008, 0x1155, 'Referenced SOP Instance UID'),
  referencedFrameNumber: attr(0x0008, 0x1160, 'Referenced Frame Number'),
  otherStudiesSequence: attr(0x0008, 0x1200, 'Studies Containing Other Referenced Instances Sequence'),
  sourceImageSequence: attr(0x0008, 0x2112, 'Source Image Sequence'),
  derivationImageSequence: attr(0x0008, 0x9124, 'Derivation Image Sequence'),
  imagePositionPatient: attr(0x0020, 0x0032, 'Image Position (Patient)'),
  imageOrientationPatient: attr(0x0020, 0x0037, 'Image Orientation (Patient)'),
  frameOfReferenceUid: attr(0x0020, 0x0052, 'Frame of Reference UID'),
  planePositionSequence: attr(0x0020, 0x9113, 'Plane Position Sequence'),
  planeOrientationSequence: attr(0x0020, 0x9116, 'Plane Orientation Sequence'),
  dimensionOrganizationType: attr(0x0020, 0x9311, 'Dimension Organization Type'),
  samplesPerPixel: attr(0x0028, 0x0002, 'Samples per Pixel'),
  photometricInterpretation: attr(0x0028, 0x0004, 'Photometric Interpretation'),
  numberOfFrames: attr(0x0028, 0x0008, 'Number of Frames'),
  rows: attr(0x0028, 0x0010, 'Rows'),
  columns: attr(0x0028, 0x0011, 'Columns'),
  pixelSpacing: attr(0x0028, 0x0030, 'Pixel Spacing'),
  bitsAllocated: attr(0x0028, 0x0100, 'Bits Allocated'),
  bitsStored: attr(0x0028, 0x0101, 'Bits Stored'),
  highBit: attr(0x0028, 0x0102, 'High Bit'),
  pixelRepresentation: attr(0x0028, 0x0103, 'Pixel Representation'),
  pixelMeasuresSequence: attr(0x0028, 0x9110, 'Pixel Measures Sequence'),
  segmentationType: attr(0x0062, 0x0001, 'Segmentation Type'),
  segmentSequence: attr(0x0062, 0x0002, 'Segment Sequence'),
  segmentNumber: attr(0x0062, 0x0004, 'Segment Number'),
  segmentLabel: attr(0x0062, 0x0005, 'Segment Label'),
  segmentAlgorithmType: attr(0x0062, 0x0008, 'Segment Algorithm Type'),
  segmentIdentificationSequence: attr(0x0062, 0x000a, 'Segment Identification Sequence'),
  referencedSegmentNumber: attr(0x0062, 0x000b, 'Referenced Segment Number'),
  maximumFractionalValue: attr(0x0062, 0x000e, 'Maximum Fractional Value'),
  segmentationFractionalType: attr(0x0062, 0x0010, 'Segmentation Fractional Type'),
  referencedFrameOfReferenceSequence: attr(0x3006, 0x0010, 'Referenced Frame of Reference Sequence'),
  rtReferencedStudySequence: attr(0x3006, 0x0012, 'RT Referenced Study Sequence'),
  rtReferencedSeriesSequence: attr(0x3006, 0x0014, 'RT Referenced Series Sequence'),
  contourImageSequence: attr(0x3006, 0x0016, 'Contour Image Sequence'),
  structureSetRoiSequence: attr(0x3006, 0x0020, 'Structure Set ROI Sequence'),
  roiNumber: attr(0x3006, 0x0022, 'ROI Number'),
  referencedFrameOfReferenceUid: attr(0x3006, 0x0024, 'Referenced Frame of Reference UID'),
  roiName: attr(0x3006, 0x0026, 'ROI Name'),
  roiContourSequence: attr(0x3006, 0x0039, 'ROI Contour Sequence'),
  contourSequence: attr(0x3006, 0x0040, 'Contour Sequence'),
  contourGeometricType: attr(0x3006, 0x0042, 'Contour Geometric Type'),
  numberOfContourPoints: attr(0x3006, 0x0046, 'Number of Contour Points'),
  contourData: attr(0x3006, 0x0050, 'Contour Data'),
  referencedRoiNumber: attr(0x3006, 0x0084, 'Referenced ROI Number'),
  sharedFunctionalGroups: attr(0x5200, 0x9229, 'Shared Functional Groups Sequence'),
  perFrameFunctionalGroups: attr(0x5200, 0x9230, 'Per-frame Functional Groups Sequence'),
  pixelData: attr(0x7fe0, 0x0010, 'Pixel Data'),
} as const;

/** Where in a file a lookup happens, so an error can say "file: Segment Sequence (0062,0002) item 2: ...". */
export interface Scope {
  readonly file: string;
  readonly path?: string | undefined;
}

export function inside(scope: Scope, what: string): Scope {
  return { file: scope.file, path: scope.path === undefined ? what : `${scope.path} > ${what}` };
}

export function itemScope(scope: Scope, sequence: Attr, index: number): Scope {
  return inside(scope, `${sequence.name} item ${index + 1}`);
}

export function fail(scope: Scope, reason: MaskErrorReason, detail: string): MaskError {
  return new MaskError(scope.file, reason, scope.path === undefined ? detail : `${scope.path}: ${detail}`);
}

/** The items of a sequence, or undefined when the sequence is absent (an empty sequence gives []). */
export function items(ds: DataSet, a: Attr): DataSet[] | undefined {
  const element = ds.elements[a.tag];
  if (element === undefined) return undefined;
  return (element.items ?? []).flatMap((item) => (item.dataSet === undefined ? [] : [item.dataSet]));
}

export function requireItems(ds: DataSet, a: Attr, scope: Scope): DataSet[] {
  const found = items(ds, a);
  if (found === undefined) throw fail(scope, 'invalid', `${a.name} is missing`);
  if (found.length === 0) throw fail(scope, 'invalid', `${a.name} has no items`);
  return found;
}

/** A text value with surrounding blanks (and UID NUL padding) removed; undefined when absent or empty. */
export function text(ds: DataSet, a: Attr): string | undefined {
  if (ds.elements[a.tag] === undefined) return undefined;
  const value = ds.string(a.tag)?.replace(/\0+$/, '').trim();
  return value === undefined || value.length === 0 ? undefined : value;
}

export function requireText(ds: DataSet, a: Attr, scope: Scope): string {
  const value = text(ds, a);
  if (value === undefined) throw fail(scope, 'invalid', `${a.name} is missing or empty`);
  return value;
}

export function uint16(ds: DataSet, a: Attr): number | undefined {
  const element = ds.elements[a.tag];
  if (element === undefined || element.length < 2) return undefined;
  return ds.uint16(a.tag);
}

export function requireUint16(ds: DataSet, a: Attr, scope: Scope): number {
  const value = uint16(ds, a);
  if (value === undefined) throw fail(scope, 'invalid', `${a.name} is missing`);
  return value;
}

/**
 * The values of a DS or IS attribute, parsed strictly: every backslash-separated value must be a finite number.
 * Read from the raw string once, since dicom-parser's indexed access re-splits it for every value.
 */
export function numbers(ds: DataSet, a: Attr, scope: Scope): number[] | undefined {
  const raw = text(ds, a);
  if (raw === undefined) return undefined;
  return raw.split('\\').map((part, i) => {
    const trimmed = part.trim();
    const value = trimmed.length === 0 ? Number.NaN : Number(trimmed);
    if (!Number.isFinite(value)) throw fail(scope, 'invalid', `${a.name} value ${i + 1} is not a number: ${JSON.stringify(part)}`);
    return value;
  });
}

export function requireNumbers(ds: DataSet, a: Attr, scope: Scope, count: number): number[] {
  const values = numbers(ds, a, scope);
  if (values === undefined) throw fail(scope, 'invalid', `${a.name} is missing`);
  if (values.length !== count) throw fail(scope, 'invalid', `${a.name} has ${values.length} values, expected ${count}`);
  return values;
}

/** An IS attribute that must hold one positive integer, or undefined when absent. */
export function positiveInteger(ds: DataSet, a: Attr, scope: Scope): number | undefined {
  const values = numbers(ds, a, scope);
  if (values === undefined) return undefined;
  const [value] = values;
  if (values.length !== 1 || value === undefined || !Number.isInteger(value) || value < 1) {
    throw fail(scope, 'invalid', `${a.name} must be one positive integer, got ${text(ds, a) ?? ''}`);
  }
  return value;
}
