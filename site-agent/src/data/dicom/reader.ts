import { readFile } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { DataSet, Element, ParseDicomOptions } from 'dicom-parser';
import { defaultCodecs, type CodecInput, type CodecRegistry, type EncodedPixelData } from './codecs.js';
import { readHeader, TAG, type DicomHeader } from './header.js';
import { unpackFrame, unsupportedPixelFormat, type PixelArray } from './pixels.js';
import { DicomRejection } from './rejection.js';
import { endOfFileMeta, guessRawDataset } from './sniff.js';
import { lookupTransferSyntax, transferSyntaxName } from './transfer-syntax.js';

export interface DecodeOptions {
  /** Name used in rejection messages and on the result (usually the path relative to the site's data dir). */
  readonly file?: string;
  /** Codecs by transfer syntax UID; defaults to the native (uncompressed) codecs. */
  readonly codecs?: CodecRegistry;
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

interface ParsedStructure {
  readonly dataSet: DataSet;
  readonly transferSyntaxUid: string;
}

type ParseAttempt = { ok: true; dataSet: DataSet } | { ok: false; error: unknown };

const GZIP_MAGIC = [0x1f, 0x8b] as const;
const DICM_OFFSET = 128;
const MISSING_TS = 'missing required meta header attribute 0002,0010';
/** dicom-parser reports running off the end of the buffer in several wordings; all mean the file is cut short. */
const TRUNCATION_PATTERN =
  /buffer overrun|buffer overread|past end of buffer|maxP ?osition|greater than or equal to 'byteArray' length|unexpected end of file/i;

function describeError(error: unknown): string {
  if (typeof error === 'string') return error;
  if (error instanceof Error) return error.message;
  // parseDicom wraps dataset errors as { exception, dataSet } so callers can inspect the partial parse.
  if (typeof error === 'object' && error !== null && 'exception' in error) return describeError(error.exception);
  return String(error);
}

function parseFailure(file: string, error: unknown, context: string): DicomRejection {
  const message = describeError(error);
  if (TRUNCATION_PATTERN.test(message)) {
    return new DicomRejection(file, 'truncated', `file ends before the DICOM data it declares (${context}: ${message})`, { cause: error });
  }
  return new DicomRejection(file, 'not-dicom', `could not parse as DICOM (${context}: ${message})`, { cause: error });
}

/** Deflated Explicit VR LE: dicom-parser hands us the whole buffer and the offset where the deflate stream starts. */
function inflater(byteArray: Uint8Array, position: number): Uint8Array {
  const inflated = inflateRawSync(byteArray.subarray(position));
  const full = new Uint8Array(position + inflated.length);
  full.set(byteArray.subarray(0, position), 0);
  full.set(inflated, position);
  return full;
}

function attempt(bytes: Uint8Array, options: ParseDicomOptions): ParseAttempt {
  try {
    return { ok: true, dataSet: dicomParser.parseDicom(bytes, options) };
  } catch (error) {
    return { ok: false, error };
  }
}

function hasPart10Prefix(bytes: Uint8Array): boolean {
  return (
    bytes.length >= DICM_OFFSET + 4 &&
    bytes[DICM_OFFSET] === 0x44 &&
    bytes[DICM_OFFSET + 1] === 0x49 &&
    bytes[DICM_OFFSET + 2] === 0x43 &&
    bytes[DICM_OFFSET + 3] === 0x4d
  );
}

function rejectUnknownSyntax(file: string, uid: string, codecs: CodecRegistry): void {
  const info = lookupTransferSyntax(uid);
  // Without a codec we cannot produce pixels, and for an unknown syntax we cannot even trust the dataset encoding.
  if (info === undefined || !codecs.has(uid)) {
    throw new DicomRejection(file, 'unsupported-transfer-syntax', `unsupported transfer syntax ${uid} (${transferSyntaxName(uid)})`);
  }
}

function parsePart10(bytes: Uint8Array, file: string, codecs: CodecRegistry): ParsedStructure {
  let uid: string | undefined;
  try {
    uid = dicomParser.readPart10Header(bytes).string(TAG.transferSyntaxUid);
  } catch (error) {
    throw parseFailure(file, error, 'file meta header');
  }
  if (uid === undefined || uid.length === 0) return parseWithoutSyntax(bytes, file, codecs);
  rejectUnknownSyntax(file, uid, codecs);
  const parsed = attempt(bytes, { inflater });
  if (!parsed.ok) {
    if (describeError(parsed.error).includes(MISSING_TS)) return parseWithoutSyntax(bytes, file, codecs);
    throw parseFailure(file, parsed.error, 'dataset');
  }
  return { dataSet: parsed.dataSet, transferSyntaxUid: uid };
}

/** File meta present but without (0002,0010): guess the dataset encoding after the meta group, as pydicom does. */
function parseWithoutSyntax(bytes: Uint8Array, file: string, codecs: CodecRegistry): ParsedStructure {
  const datasetStart = endOfFileMeta(bytes, DICM_OFFSET + 4);
  if (datasetStart >= bytes.length) {
    throw new DicomRejection(file, 'truncated', `file ends inside the file meta header (${bytes.length} bytes)`);
  }
  const rest = bytes.subarray(datasetStart);
  const guess = guessRawDataset(rest, { afterFileMeta: true });
  if (guess === undefined) {
    throw new DicomRejection(file, 'not-dicom', 'file meta has no Transfer Syntax UID (0002,0010) and the dataset encoding is not recognisable');
  }
  return parseRaw(rest, guess.transferSyntaxUid, file, codecs);
}

function parseRaw(bytes: Uint8Array, uid: string, file: string, codecs: CodecRegistry): ParsedStructure {
  rejectUnknownSyntax(file, uid, codecs);
  const parsed = attempt(bytes, { TransferSyntaxUID: uid });
  if (!parsed.ok) throw parseFailure(file, parsed.error, 'dataset without file meta');
  return { dataSet: parsed.dataSet, transferSyntaxUid: uid };
}

function parseStructure(bytes: Uint8Array, file: string, codecs: CodecRegistry): ParsedStructure {
  if (hasPart10Prefix(bytes)) return parsePart10(bytes, file, codecs);
  if (bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1]) {
    throw new DicomRejection(file, 'not-dicom', 'gzip-compressed data, not DICOM (decompress it before import)');
  }
  const guess = guessRawDataset(bytes);
  if (guess === undefined) {
    throw new DicomRejection(file, 'not-dicom', `not DICOM: no 'DICM' prefix at byte 128 and no recognisable dataset at the start (${bytes.length} bytes)`);
  }
  if (guess.startsWithFileMeta) {
    // Part 10 without the preamble: restore the 128-byte preamble and 'DICM' so the regular path applies.
    const restored = new Uint8Array(DICM_OFFSET + 4 + bytes.length - guess.offset);
    restored.set([0x44, 0x49, 0x43, 0x4d], DICM_OFFSET);
    restored.set(bytes.subarray(guess.offset), DICM_OFFSET + 4);
    return parsePart10(restored, file, codecs);
  }
  return parseRaw(bytes.subarray(guess.offset), guess.transferSyntaxUid, file, codecs);
}

const SEQUENCE_DELIMITER = [0xfe, 0xff, 0xdd, 0xe0] as const;

function isSequenceDelimiter(bytes: Uint8Array, at: number): boolean {
  return SEQUENCE_DELIMITER.every((b, i) => bytes[at + i] === b);
}

/** JPEG / JPEG-LS SOI, JPEG 2000 SOC, and the JP2 signature box that some encoders wrap codestreams in. */
const CODESTREAM_STARTS: readonly (readonly number[])[] = [
  [0xff, 0xd8, 0xff],
  [0xff, 0x4f, 0xff, 0x51],
  [0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20],
];

/**
 * Indices of the fragments that begin a codestream. Without a Basic Offset Table a multi-frame image may still
 * spread frames over several fragments; every JPEG-family frame opens with its start marker, while a
 * continuation fragment almost never does, so these indices are the frame boundaries. The caller only trusts
 * them when their count equals Number of Frames.
 */
function codestreamStarts(bytes: Uint8Array, fragments: readonly { position: number }[]): number[] {
  const starts: number[] = [];
  fragments.forEach((fragment, i) => {
    if (CODESTREAM_STARTS.some((marker) => marker.every((b, k) => bytes[fragment.position + k] === b))) starts.push(i);
  });
  return starts;
}

function encodedPixelData(dataSet: DataSet, element: Element, header: DicomHeader, file: string): EncodedPixelData {
  if (element.encapsulatedPixelData !== true) {
    return {
      kind: 'native',
      bytes: dataSet.byteArray.subarray(element.dataOffset, element.dataOffset + element.length),
      vr: element.vr,
    };
  }
  const fragments = element.fragments ?? [];
  const last = fragments[fragments.length - 1];
  if (last !== undefined && !isSequenceDelimiter(dataSet.byteArray, last.position + last.length)) {
    // dicom-parser quietly clips a fragment that runs past the end of the file and tolerates a missing
    // Sequence Delimitation Item; either way the file stops inside the Pixel Data, so the frames cannot be trusted.
    throw new DicomRejection(
      file,
      'truncated',
      `file ends inside the encapsulated Pixel Data: no Sequence Delimitation Item (FFFE,E0DD) after fragment ${fragments.length} of ${fragments.length}`,
    );
  }
  let starts: number[] | undefined;
  return {
    kind: 'encapsulated',
    fragmentCount: fragments.length,
    frame(index) {
      if ((element.basicOffsetTable ?? []).length > 0) {
        return dicomParser.readEncapsulatedImageFrame(dataSet, element, index);
      }
      if (header.numberOfFrames === 1) {
        return dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, 0, fragments.length);
      }
      // Without an offset table the simple layout is one fragment per frame (always so for RLE).
      if (fragments.length === header.numberOfFrames) {
        return dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, index, 1);
      }
      starts ??= codestreamStarts(dataSet.byteArray, fragments);
      const first = starts[index];
      if (starts.length === header.numberOfFrames && starts[0] === 0 && first !== undefined) {
        const end = starts[index + 1] ?? fragments.length;
        return dicomParser.readEncapsulatedPixelDataFromFragments(dataSet, element, first, end - first);
      }
      throw new DicomRejection(
        file,
        'unsupported-pixel-format',
        `cannot split ${fragments.length} fragments into ${header.numberOfFrames} frames without a Basic Offset Table`,
      );
    },
  };
}

/**
 * Float Pixel Data (7FE0,0008, 32-bit IEEE) or Double Float Pixel Data (7FE0,0009, 64-bit), used by parametric
 * maps (PS3.3 C.7.6.3). Always native, single sample, no bit masking. Returns undefined when neither is present.
 */
function decodeFloatPixelData(dataSet: DataSet, transferSyntaxUid: string, file: string): DicomImage | undefined {
  const single = dataSet.elements[TAG.floatPixelData];
  const double = dataSet.elements[TAG.doubleFloatPixelData];
  const element = single ?? double;
  if (element === undefined || element.length === 0) return undefined;
  const width = single !== undefined ? 4 : 8;
  if (element.encapsulatedPixelData === true) {
    throw new DicomRejection(file, 'unsupported-pixel-format', 'encapsulated Float / Double Float Pixel Data is not defined by DICOM');
  }
  const headerResult = readHeader(dataSet, transferSyntaxUid);
  if (!headerResult.ok) {
    throw new DicomRejection(file, 'unsupported-pixel-format', `Float Pixel Data present but ${headerResult.missing} is missing`);
  }
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
  if (element.length < needed) {
    throw new DicomRejection(file, 'truncated', `Float Pixel Data holds ${element.length} bytes but ${header.numberOfFrames} frame(s) of ${header.rows} x ${header.columns} at ${bits} bits need ${needed}`);
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
  const { dataSet, transferSyntaxUid } = parseStructure(bytes, file, codecs);

  const element = dataSet.elements[TAG.pixelData];
  if (element === undefined || element.length === 0) {
    const floatImage = decodeFloatPixelData(dataSet, transferSyntaxUid, file);
    if (floatImage !== undefined) return floatImage;
    const sopClass = dataSet.string(TAG.sopClassUid);
    throw new DicomRejection(file, 'no-pixel-data', `no Pixel Data (7FE0,0010)${sopClass ? ` in SOP Class ${sopClass}` : ''}; not an image`);
  }

  const headerResult = readHeader(dataSet, transferSyntaxUid);
  if (!headerResult.ok) {
    throw new DicomRejection(file, 'unsupported-pixel-format', `Pixel Data present but ${headerResult.missing} is missing`);
  }
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
      throw new DicomRejection(file, 'unsupported-pixel-format', `codec '${codec.name}' failed on frame ${index}: ${describeError(error)}`, { cause: error });
    }
    try {
      return unpackFrame(frame.bytes, header, frame.planar);
    } catch (error) {
      throw new DicomRejection(file, 'truncated', `frame ${index} is shorter than its header declares: ${describeError(error)}`, { cause: error });
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
