import { readFile } from 'node:fs/promises';
import type { DataSet } from 'dicom-parser';
import { defaultCodecs, type CodecInput, type CodecRegistry } from './codecs.js';
import { encodedPixelData } from './fragments.js';
import { readHeader, TAG, type DicomHeader } from './header.js';
import { MAX_INFLATED_BYTES, parseStructure } from './parse.js';
import { unpackFrame, unsupportedPixelFormat, type PixelArray } from './pixels.js';
import { damagedStream, DicomRejection, frameLabel } from './rejection.js';
import { elementPastEnd, endsWithCompletePixelData, formatTag, structureDamage } from './structure.js';
import { lookupTransferSyntax, transferSyntaxName } from './transfer-syntax.js';

export { MAX_INFLATED_BYTES } from './parse.js';

export interface DecodeOptions {
  /** Name used in rejection messages and on the result (usually the path relative to the site's data dir). */
  readonly file?: string;
  /** Codecs by transfer syntax UID; defaults to the native (uncompressed) codecs. */
  readonly codecs?: CodecRegistry;
  /** Most bytes a deflated dataset may expand to; defaults to MAX_INFLATED_BYTES. */
  readonly maxInflatedBytes?: number;
}

/** A decoded DICOM image. Frame 0 is decoded eagerly so an undecodable file is refused when it is read. */
export interface DicomImage {
  readonly file: string;
  readonly header: DicomHeader;
  /** Stored values of frame 0 (before the modality LUT), interleaved when samplesPerPixel > 1. */
  readonly pixels: PixelArray;
  /** Decodes any frame (0-based); throws RangeError for an index outside [0, numberOfFrames). */
  decodeFrame(index: number): PixelArray;
}

/**
 * Refuses a dataset in which an element other than Pixel Data claims more bytes than the file holds (dicom-parser
 * allows that in implicit VR, and reading the element later would throw). A file that still ends with its whole
 * Pixel Data was not cut short: the length is wrong.
 */
function rejectElementPastEnd(dataSet: DataSet, file: string): void {
  const past = elementPastEnd(dataSet);
  if (past === undefined) return;
  if (endsWithCompletePixelData(dataSet.byteArray)) {
    const damage = structureDamage(dataSet) ?? `element ${formatTag(past.tag)} declares ${past.missing} bytes more than the rest of the file holds`;
    throw new DicomRejection(file, 'corrupt', `the DICOM header is damaged although the file is complete: ${damage}`);
  }
  throw new DicomRejection(file, 'truncated', `file ends before the DICOM data it declares: element ${formatTag(past.tag)} needs ${past.missing} more bytes`);
}

/** A mandatory attribute is missing: a wrong length that swallowed it is damage, a file without it is unsupported. */
function missingAttribute(dataSet: DataSet, file: string, detail: string): DicomRejection {
  const damage = structureDamage(dataSet);
  if (damage !== undefined) return new DicomRejection(file, 'corrupt', `the DICOM header is damaged: ${damage} (${detail})`);
  return new DicomRejection(file, 'unsupported-pixel-format', detail);
}

/**
 * Float Pixel Data (7FE0,0008, 32-bit IEEE) or Double Float Pixel Data (7FE0,0009, 64-bit), used by parametric
 * maps (PS3.3 C.7.6.3). Always native, single sample, no bit masking. Returns undefined when neither is present.
 */
function decodeFloatPixelData(dataSet: DataSet, transferSyntaxUid: string, file: string, acrNema: boolean): DicomImage | undefined {
  const single = dataSet.elements[TAG.floatPixelData];
  const double = dataSet.elements[TAG.doubleFloatPixelData];
  const element = single ?? double;
  if (element === undefined || element.length === 0) return undefined;
  const width = single !== undefined ? 4 : 8;
  if (element.encapsulatedPixelData === true) {
    throw new DicomRejection(file, 'unsupported-pixel-format', 'encapsulated Float / Double Float Pixel Data is not defined by DICOM');
  }
  const headerResult = readHeader(dataSet, transferSyntaxUid, { acrNema });
  if (!headerResult.ok) throw missingAttribute(dataSet, file, `Float Pixel Data present but ${headerResult.missing} is missing`);
  // Bits Stored / High Bit / Pixel Representation are absent for float data (PS3.3 C.7.6.3.1), so describe the
  // samples fully here rather than let defaults derived from a missing Bits Allocated leak out.
  const bits = width * 8;
  const header: DicomHeader = { ...headerResult.header, bitsAllocated: bits, bitsStored: bits, highBit: bits - 1, pixelRepresentation: 0, signed: false };
  if (header.rows === 0 || header.columns === 0) throw new DicomRejection(file, 'unsupported-pixel-format', `empty image (${header.rows} x ${header.columns})`);
  if (header.samplesPerPixel !== 1) {
    throw new DicomRejection(file, 'unsupported-pixel-format', `Float Pixel Data with ${header.samplesPerPixel} samples per pixel is not supported`);
  }
  const syntax = lookupTransferSyntax(transferSyntaxUid);
  const littleEndian = syntax?.littleEndian ?? true;
  const pixels = header.rows * header.columns;
  const needed = pixels * width * header.numberOfFrames;
  // dicom-parser clips an implicit VR value at the end of the file; what counts is what the buffer holds.
  const held = Math.min(element.length, dataSet.byteArray.length - element.dataOffset);
  if (held < needed) {
    const shape = `${header.numberOfFrames} frame(s) of ${header.rows} x ${header.columns} at ${bits} bits`;
    if (element.dataOffset + element.length > dataSet.byteArray.length) {
      throw new DicomRejection(file, 'truncated', `file ends inside the Float Pixel Data: it holds ${held} bytes but ${shape} need ${needed}`);
    }
    throw new DicomRejection(file, 'corrupt', `Float Pixel Data holds ${held} bytes but the header describes ${shape}, which need ${needed}; the header and the pixel data do not match`);
  }
  // A DataView copies into a fresh, aligned array and honours the dataset's byte order.
  const view = new DataView(dataSet.byteArray.buffer, dataSet.byteArray.byteOffset + element.dataOffset, needed);
  const decodeFrame = (index: number): PixelArray => {
    if (!Number.isInteger(index) || index < 0 || index >= header.numberOfFrames) {
      throw new RangeError(`${file}: frame ${index} out of range (file has ${header.numberOfFrames})`);
    }
    const base = index * pixels * width;
    if (width === 4) {
      const out = new Float32Array(pixels);
      for (let i = 0; i < pixels; i++) out[i] = view.getFloat32(base + i * 4, littleEndian);
      return out;
    }
    const out = new Float64Array(pixels);
    for (let i = 0; i < pixels; i++) out[i] = view.getFloat64(base + i * 8, littleEndian);
    return out;
  };
  return { file, header, pixels: decodeFrame(0), decodeFrame };
}

/**
 * Parses and decodes a DICOM file held in memory. Throws DicomRejection for anything that is not a decodable
 * image; never returns misread pixels.
 */
export function decodeDicom(bytes: Uint8Array, options: DecodeOptions = {}): DicomImage {
  const file = options.file ?? '<memory>';
  const codecs = options.codecs ?? defaultCodecs;
  const { dataSet, transferSyntaxUid, hasFileMeta } = parseStructure(bytes, { file, codecs, maxInflatedBytes: options.maxInflatedBytes ?? MAX_INFLATED_BYTES });
  const acrNema = !hasFileMeta;
  rejectElementPastEnd(dataSet, file);

  const element = dataSet.elements[TAG.pixelData];
  if (element === undefined || element.length === 0) {
    const floatImage = decodeFloatPixelData(dataSet, transferSyntaxUid, file, acrNema);
    if (floatImage !== undefined) return floatImage;
    if (endsWithCompletePixelData(dataSet.byteArray)) {
      // The parser walked past the Pixel Data that the file ends with: a wrong length earlier hid it.
      const damage = structureDamage(dataSet);
      throw new DicomRejection(file, 'corrupt', `the DICOM header is damaged: the file ends with Pixel Data (7FE0,0010) but a wrong element length before it hides the image${damage === undefined ? '' : ` (${damage})`}`);
    }
    const sopClass = dataSet.string(TAG.sopClassUid);
    throw new DicomRejection(file, 'no-pixel-data', `no Pixel Data (7FE0,0010)${sopClass ? ` in SOP Class ${sopClass}` : ''}; not an image`);
  }

  const headerResult = readHeader(dataSet, transferSyntaxUid, { acrNema });
  if (!headerResult.ok) throw missingAttribute(dataSet, file, `Pixel Data present but ${headerResult.missing} is missing`);
  const header = headerResult.header;
  const problem = unsupportedPixelFormat(header);
  if (problem !== undefined) throw new DicomRejection(file, 'unsupported-pixel-format', problem);
  if (header.bitsAllocated === 1 && element.encapsulatedPixelData === true) {
    // No compressed transfer syntax defines a 1-bit sample layout our codecs could hand back.
    throw new DicomRejection(file, 'unsupported-pixel-format', `Bits Allocated 1 under compressed transfer syntax ${transferSyntaxName(transferSyntaxUid)} is not supported`);
  }

  const codec = codecs.get(transferSyntaxUid);
  const syntax = lookupTransferSyntax(transferSyntaxUid);
  if (codec === undefined || syntax === undefined) {
    // parseStructure already checked this; kept so the types below need no assertion.
    throw new DicomRejection(file, 'unsupported-transfer-syntax', `unsupported transfer syntax ${transferSyntaxUid} (${transferSyntaxName(transferSyntaxUid)})`);
  }
  // After inflation a deflated dataset is plain little endian; only big endian needs swapping.
  const input: CodecInput = { file, header, littleEndian: syntax.littleEndian, pixelData: encodedPixelData(dataSet, element, header, file) };

  const decodeFrame = (index: number): PixelArray => {
    if (!Number.isInteger(index) || index < 0 || index >= header.numberOfFrames) {
      throw new RangeError(`${file}: frame ${index} out of range (file has ${header.numberOfFrames})`);
    }
    let frame;
    try {
      frame = codec.decodeFrame(input, index);
    } catch (error) {
      if (error instanceof DicomRejection) throw error;
      throw damagedStream(file, syntax.name, index, header.numberOfFrames, `codec '${codec.name}'`, error);
    }
    try {
      return unpackFrame(frame.bytes, header, frame.planar);
    } catch (error) {
      throw new DicomRejection(file, 'corrupt', `${frameLabel(index, header.numberOfFrames)} decodes to fewer samples than the header declares, so the image data is damaged`, { cause: error });
    }
  };

  return { file, header, pixels: decodeFrame(0), decodeFrame };
}

/** Every frame of a multi-frame image, in order. */
export function decodeAllFrames(image: DicomImage): PixelArray[] {
  const frames: PixelArray[] = [image.pixels];
  for (let i = 1; i < image.header.numberOfFrames; i++) frames.push(image.decodeFrame(i));
  return frames;
}

/** Reads and decodes a file from disk; I/O errors (missing file, permissions) propagate unchanged. */
export async function readDicomFile(path: string, options: DecodeOptions = {}): Promise<DicomImage> {
  const bytes = await readFile(path);
  return decodeDicom(bytes, { ...options, file: options.file ?? path });
}
