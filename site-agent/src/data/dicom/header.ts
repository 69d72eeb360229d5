import type { DataSet } from 'dicom-parser';
import { transferSyntaxName } from './transfer-syntax.js';
import { patientKeyOf } from './patient-key.js';

/** The image attributes the pipeline needs, normalised (defaults applied, multi-valued fields reduced). */
export interface DicomHeader {
  readonly transferSyntaxUid: string;
  readonly transferSyntaxName: string;
  readonly sopClassUid: string | undefined;
  readonly sopInstanceUid: string | undefined;
  readonly seriesInstanceUid: string | undefined;
  readonly studyInstanceUid: string | undefined;
  /** Pseudonym of Patient ID (0010,0020), see patientKeyOf; the ID itself is not kept. */
  readonly patientKey: string | undefined;
  readonly modality: string | undefined;
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly photometricInterpretation: string;
  /** 0 = samples interleaved per pixel, 1 = one plane per sample (only meaningful when samplesPerPixel > 1). */
  readonly planarConfiguration: 0 | 1;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly highBit: number;
  readonly pixelRepresentation: 0 | 1;
  /** Convenience mirror of pixelRepresentation === 1 (two's complement samples). */
  readonly signed: boolean;
  readonly numberOfFrames: number;
  readonly rescaleSlope: number;
  readonly rescaleIntercept: number;
  /** First value of Window Center / Width (0028,1050/1051), in modality-LUT (rescaled) units. */
  readonly windowCenter: number | undefined;
  readonly windowWidth: number | undefined;
  /**
   * Red/Green/Blue Palette Color LUTs (0028,1101-1103 / 0028,1201-1203) when Photometric Interpretation is
   * PALETTE COLOR and the tables are present and consistent; pixels stay stored indices, consumers map them.
   */
  readonly paletteLut?: PaletteColorLut | undefined;
}

/** One palette colour table set (PS3.3 C.7.6.3.1.5/6). All three channels share entries and first mapped value. */
export interface PaletteColorLut {
  /** Stored value that maps to entry 0; values below it use entry 0, values past the end use the last entry. */
  readonly firstMapped: number;
  /** 8 or 16: the range of the table values is [0, 2^bitsPerEntry - 1]. */
  readonly bitsPerEntry: 8 | 16;
  readonly red: Uint16Array;
  readonly green: Uint16Array;
  readonly blue: Uint16Array;
}

export const TAG = {
  transferSyntaxUid: 'x00020010',
  sopClassUid: 'x00080016',
  sopInstanceUid: 'x00080018',
  modality: 'x00080060',
  studyInstanceUid: 'x0020000d',
  seriesInstanceUid: 'x0020000e',
  patientId: 'x00100020',
  samplesPerPixel: 'x00280002',
  photometricInterpretation: 'x00280004',
  planarConfiguration: 'x00280006',
  numberOfFrames: 'x00280008',
  rows: 'x00280010',
  columns: 'x00280011',
  bitsAllocated: 'x00280100',
  bitsStored: 'x00280101',
  highBit: 'x00280102',
  pixelRepresentation: 'x00280103',
  windowCenter: 'x00281050',
  windowWidth: 'x00281051',
  rescaleIntercept: 'x00281052',
  rescaleSlope: 'x00281053',
  redPaletteDescriptor: 'x00281101',
  greenPaletteDescriptor: 'x00281102',
  bluePaletteDescriptor: 'x00281103',
  redPaletteData: 'x00281201',
  greenPaletteData: 'x00281202',
  bluePaletteData: 'x00281203',
  floatPixelData: 'x7fe00008',
  doubleFloatPixelData: 'x7fe00009',
  pixelData: 'x7fe00010',
} as const;

/** Result of reading the header: either a header or the name of the mandatory attribute that is missing. */
export type HeaderResult = { ok: true; header: DicomHeader } | { ok: false; missing: string };

function finiteOrUndefined(value: number | undefined): number | undefined {
  return value !== undefined && Number.isFinite(value) ? value : undefined;
}

function nonEmptyString(value: string | undefined): string | undefined {
  return value === undefined || value.length === 0 ? undefined : value;
}

/** JPEG 2000 family syntaxes, whose decoders undo the reversible / irreversible colour transform themselves. */
const JPEG_2000_FAMILY = new Set([
  '1.2.840.10008.1.2.4.90',
  '1.2.840.10008.1.2.4.91',
  '1.2.840.10008.1.2.4.201',
  '1.2.840.10008.1.2.4.202',
  '1.2.840.10008.1.2.4.203',
]);

/** 8-bit lossy JPEG syntaxes; libjpeg-turbo converts YCbCr scans to RGB as it decodes. */
const LOSSY_JPEG = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51']);

/**
 * The photometric interpretation of the pixels the reader returns, which for colour JPEG families differs from
 * the one stored. YBR_RCT / YBR_ICT only name the component transform inside a JPEG 2000 codestream (PS3.3
 * C.7.6.3.1.2) and the decoder inverts it; libjpeg-turbo likewise upsamples and converts YBR_FULL(_422) scans.
 * Both hand back RGB, so the image is reported as RGB and consumers do not convert a second time.
 */
function decodedPhotometric(photometric: string, transferSyntaxUid: string): string {
  if ((photometric === 'YBR_RCT' || photometric === 'YBR_ICT') && JPEG_2000_FAMILY.has(transferSyntaxUid)) return 'RGB';
  if ((photometric === 'YBR_FULL' || photometric === 'YBR_FULL_422') && LOSSY_JPEG.has(transferSyntaxUid)) return 'RGB';
  return photometric;
}

/** Descriptor values (entries, first mapped, bits); 0 entries means 65536 because US cannot hold 2^16. */
function paletteDescriptor(dataSet: DataSet, tag: string, signed: boolean): [number, number, number] | undefined {
  const entries = dataSet.uint16(tag, 0);
  const first = dataSet.uint16(tag, 1);
  const bits = dataSet.uint16(tag, 2);
  if (entries === undefined || first === undefined || bits === undefined) return undefined;
  // The first mapped value is SS when the pixels are signed (PS3.3 C.7.6.3.1.5).
  return [entries === 0 ? 65536 : entries, signed && first >= 0x8000 ? first - 0x10000 : first, bits];
}

/**
 * One channel's table. 16-bit entries are OW words (read in the dataset's byte order); 8-bit entries are one
 * byte each (padded to even length). Any other length is ambiguous, so the table is refused rather than guessed.
 */
function paletteData(dataSet: DataSet, tag: string, entries: number, bits: 8 | 16): Uint16Array | undefined {
  const element = dataSet.elements[tag];
  if (element === undefined) return undefined;
  const out = new Uint16Array(entries);
  if (bits === 16) {
    if (element.length < entries * 2) return undefined;
    for (let i = 0; i < entries; i++) out[i] = dataSet.uint16(tag, i) ?? 0;
    return out;
  }
  if (element.length !== entries && element.length !== entries + 1) return undefined;
  out.set(dataSet.byteArray.subarray(element.dataOffset, element.dataOffset + entries));
  return out;
}

function readPaletteLut(dataSet: DataSet, signed: boolean): PaletteColorLut | undefined {
  const red = paletteDescriptor(dataSet, TAG.redPaletteDescriptor, signed);
  const green = paletteDescriptor(dataSet, TAG.greenPaletteDescriptor, signed);
  const blue = paletteDescriptor(dataSet, TAG.bluePaletteDescriptor, signed);
  if (red === undefined || green === undefined || blue === undefined) return undefined;
  // The standard requires identical entry counts and first mapped values across channels; a mismatch is corrupt.
  if (red.some((v, i) => v !== green[i] || v !== blue[i])) return undefined;
  const [entries, firstMapped, bits] = red;
  if (bits !== 8 && bits !== 16) return undefined;
  const r = paletteData(dataSet, TAG.redPaletteData, entries, bits);
  const g = paletteData(dataSet, TAG.greenPaletteData, entries, bits);
  const b = paletteData(dataSet, TAG.bluePaletteData, entries, bits);
  if (r === undefined || g === undefined || b === undefined) return undefined;
  return { firstMapped, bitsPerEntry: bits, red: r, green: g, blue: b };
}

export interface ReadHeaderOptions {
  /**
   * The dataset came without Part 10 file meta, as ACR-NEMA 1.0/2.0 files do. Those standards had no Photometric
   * Interpretation for single-sample images: they were greyscale with 0 as black, i.e. MONOCHROME2.
   */
  readonly acrNema?: boolean;
}

export function readHeader(dataSet: DataSet, transferSyntaxUid: string, options: ReadHeaderOptions = {}): HeaderResult {
  const rows = dataSet.uint16(TAG.rows);
  if (rows === undefined) return { ok: false, missing: 'Rows (0028,0010)' };
  const columns = dataSet.uint16(TAG.columns);
  if (columns === undefined) return { ok: false, missing: 'Columns (0028,0011)' };
  const bitsAllocated = dataSet.uint16(TAG.bitsAllocated);
  if (bitsAllocated === undefined) return { ok: false, missing: 'Bits Allocated (0028,0100)' };
  const samplesPerPixel = dataSet.uint16(TAG.samplesPerPixel) ?? 1;
  const photometric =
    nonEmptyString(dataSet.string(TAG.photometricInterpretation)) ?? (options.acrNema === true && samplesPerPixel === 1 ? 'MONOCHROME2' : undefined);
  if (photometric === undefined) return { ok: false, missing: 'Photometric Interpretation (0028,0004)' };

  // Defaults follow what viewers assume for older files that omit type-1 attributes that have an obvious value.
  const bitsStored = dataSet.uint16(TAG.bitsStored) ?? bitsAllocated;
  const highBit = dataSet.uint16(TAG.highBit) ?? bitsStored - 1;
  const pixelRepresentation = dataSet.uint16(TAG.pixelRepresentation) === 1 ? 1 : 0;
  const frames = finiteOrUndefined(dataSet.intString(TAG.numberOfFrames));
  const slope = finiteOrUndefined(dataSet.floatString(TAG.rescaleSlope));
  const intercept = finiteOrUndefined(dataSet.floatString(TAG.rescaleIntercept));
  const windowWidth = finiteOrUndefined(dataSet.floatString(TAG.windowWidth, 0));
  const windowCenter = finiteOrUndefined(dataSet.floatString(TAG.windowCenter, 0));
  // A window is only usable as a pair with positive width; half a window is ignored rather than guessed.
  const hasWindow = windowCenter !== undefined && windowWidth !== undefined && windowWidth > 0;

  return {
    ok: true,
    header: {
      transferSyntaxUid,
      transferSyntaxName: transferSyntaxName(transferSyntaxUid),
      sopClassUid: nonEmptyString(dataSet.string(TAG.sopClassUid)),
      sopInstanceUid: nonEmptyString(dataSet.string(TAG.sopInstanceUid)),
      seriesInstanceUid: nonEmptyString(dataSet.string(TAG.seriesInstanceUid)),
      studyInstanceUid: nonEmptyString(dataSet.string(TAG.studyInstanceUid)),
      patientKey: patientKeyOrUndefined(nonEmptyString(dataSet.string(TAG.patientId)?.trim())),
      modality: nonEmptyString(dataSet.string(TAG.modality)),
      rows,
      columns,
      samplesPerPixel,
      photometricInterpretation: decodedPhotometric(photometric.toUpperCase(), transferSyntaxUid),
      planarConfiguration: dataSet.uint16(TAG.planarConfiguration) === 1 ? 1 : 0,
      bitsAllocated,
      bitsStored,
      highBit,
      pixelRepresentation,
      signed: pixelRepresentation === 1,
      numberOfFrames: frames !== undefined && frames > 0 ? frames : 1,
      // A zero slope is invalid and would flatten the image; treat it like an absent one.
      rescaleSlope: slope !== undefined && slope !== 0 ? slope : 1,
      rescaleIntercept: intercept ?? 0,
      windowCenter: hasWindow ? windowCenter : undefined,
      windowWidth: hasWindow ? windowWidth : undefined,
      paletteLut: photometric.toUpperCase() === 'PALETTE COLOR' ? readPaletteLut(dataSet, pixelRepresentation === 1) : undefined,
    },
  };
}

function patientKeyOrUndefined(patientId: string | undefined): string | undefined {
  return patientId === undefined ? undefined : patientKeyOf(patientId);
}
