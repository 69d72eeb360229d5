import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { DataSet, ParseDicomOptions } from 'dicom-parser';
import type { CodecRegistry } from './codecs.js';
import { TAG } from './header.js';
import { DicomRejection } from './rejection.js';
import { endOfFileMeta, guessRawDataset } from './sniff.js';
import { endsWithCompletePixelData, structureDamage } from './structure.js';
import { lookupTransferSyntax, transferSyntaxName } from './transfer-syntax.js';

/**
 * The most a Deflated Explicit VR Little Endian dataset may inflate to. Deflate reaches ratios above 1000:1, so a
 * few kilobytes can claim gigabytes; 1 GiB is far beyond any image a site trains on (a 4096 x 4096 x 16-bit frame
 * is 32 MiB) and still small enough that one hostile file cannot take the machine's memory.
 */
export const MAX_INFLATED_BYTES = 1024 ** 3;

/** The dataset as dicom-parser read it, with what the reader needs to know about how it was stored. */
export interface ParsedStructure {
  readonly dataSet: DataSet;
  readonly transferSyntaxUid: string;
  /** False for a bare dataset without Part 10 file meta: an ACR-NEMA style file, which may omit attributes. */
  readonly hasFileMeta: boolean;
}

interface ParseContext {
  readonly file: string;
  readonly codecs: CodecRegistry;
  readonly maxInflatedBytes: number;
}

type ParseAttempt = { ok: true; dataSet: DataSet } | { ok: false; error: unknown };

const GZIP_MAGIC = [0x1f, 0x8b] as const;
const DICM_OFFSET = 128;
const MISSING_TS = 'missing required meta header attribute 0002,0010';
/** dicom-parser reports running off the end of the buffer in several wordings; each means a length points past it. */
const TRUNCATION_PATTERN =
  /buffer overrun|buffer overread|past end of buffer|maxP ?osition|greater than or equal to 'byteArray' length|unexpected end of file/i;

export function describeError(error: unknown): string {
  if (typeof error === 'string') return error;
  if (error instanceof Error) return error.message;
  // parseDicom wraps dataset errors as { exception, dataSet } so callers can inspect the partial parse.
  if (typeof error === 'object' && error !== null && 'exception' in error) return describeError(error.exception);
  return String(error);
}

function partialDataSet(error: unknown): DataSet | undefined {
  if (typeof error !== 'object' || error === null || !('dataSet' in error)) return undefined;
  const dataSet = (error as { dataSet: unknown }).dataSet;
  return typeof dataSet === 'object' && dataSet !== null && 'elements' in dataSet && 'byteArray' in dataSet ? (dataSet as DataSet) : undefined;
}

/**
 * Why a parse stopped. When the file still ends with its whole Pixel Data nothing was cut off, so a length inside
 * is wrong ('corrupt'); running off the end of any other file means it really stops early ('truncated'); any
 * other parser error gets `otherwise`.
 */
function parseFailure(file: string, bytes: Uint8Array, error: unknown, context: string, otherwise: 'not-dicom' | 'corrupt'): DicomRejection {
  if (error instanceof DicomRejection) return error;
  const message = describeError(error);
  const partial = partialDataSet(error);
  const data = partial?.byteArray ?? bytes;
  // The element the parser was in when it ran out, when that was the encapsulated Pixel Data.
  const inFragments = partial !== undefined && Object.values(partial.elements).at(-1)?.encapsulatedPixelData === true;
  if (endsWithCompletePixelData(data)) {
    if (inFragments) {
      return new DicomRejection(file, 'corrupt', `the encapsulated Pixel Data is damaged although the file is complete: a fragment length runs past the end of the file (${context}: ${message})`, {
        cause: error,
      });
    }
    const damage = partial === undefined ? undefined : structureDamage(partial);
    return new DicomRejection(
      file,
      'corrupt',
      `the DICOM header is damaged although the file is complete: ${damage ?? 'an element length does not match the data that follows it'} (${context}: ${message})`,
      { cause: error },
    );
  }
  if (TRUNCATION_PATTERN.test(message)) {
    const where = inFragments ? 'file ends inside the encapsulated Pixel Data' : 'file ends before the DICOM data it declares';
    return new DicomRejection(file, 'truncated', `${where} (${context}: ${message})`, { cause: error });
  }
  if (otherwise === 'corrupt') return new DicomRejection(file, 'corrupt', `the DICOM dataset is damaged and cannot be read (${context}: ${message})`, { cause: error });
  return new DicomRejection(file, 'not-dicom', `could not parse as DICOM (${context}: ${message})`, { cause: error });
}

function mebibytes(bytes: number): string {
  return bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3} GiB` : `${Math.round((bytes / 1024 ** 2) * 10) / 10} MiB`;
}

/**
 * Deflated Explicit VR LE: dicom-parser hands over the whole buffer and the offset where the deflate stream starts.
 * zlib stops at `limit` bytes of output, so a decompression bomb is refused before it can exhaust memory.
 */
export function inflateDataset(byteArray: Uint8Array, position: number, file: string, limit: number): Uint8Array {
  let inflated: Buffer;
  try {
    inflated = inflateRawSync(byteArray.subarray(position), { maxOutputLength: limit });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DicomRejection(
        file,
        'corrupt',
        `the deflate-compressed dataset expands to more than ${mebibytes(limit)}, the most the reader accepts; the file is damaged or built to exhaust memory`,
        { cause: error },
      );
    }
    if (code === 'Z_BUF_ERROR') {
      throw new DicomRejection(file, 'truncated', 'file ends inside the deflate-compressed dataset', { cause: error });
    }
    throw new DicomRejection(file, 'corrupt', `the deflate-compressed dataset is damaged and cannot be expanded (${describeError(error)})`, { cause: error });
  }
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

function parsePart10(bytes: Uint8Array, ctx: ParseContext): ParsedStructure {
  const { file, codecs } = ctx;
  let uid: string | undefined;
  try {
    uid = dicomParser.readPart10Header(bytes).string(TAG.transferSyntaxUid);
  } catch (error) {
    throw parseFailure(file, bytes, error, 'file meta header', 'not-dicom');
  }
  if (uid === undefined || uid.length === 0) return parseWithoutSyntax(bytes, ctx);
  rejectUnknownSyntax(file, uid, codecs);
  const parsed = attempt(bytes, { inflater: (array, position) => inflateDataset(array, position, file, ctx.maxInflatedBytes) });
  if (!parsed.ok) {
    if (describeError(parsed.error).includes(MISSING_TS)) return parseWithoutSyntax(bytes, ctx);
    // The file meta parsed, so this is DICOM: whatever stops the dataset is damage or truncation.
    throw parseFailure(file, bytes, parsed.error, 'dataset', 'corrupt');
  }
  return { dataSet: parsed.dataSet, transferSyntaxUid: uid, hasFileMeta: true };
}

/** File meta present but without (0002,0010): guess the dataset encoding after the meta group, as pydicom does. */
function parseWithoutSyntax(bytes: Uint8Array, ctx: ParseContext): ParsedStructure {
  const datasetStart = endOfFileMeta(bytes, DICM_OFFSET + 4);
  if (datasetStart >= bytes.length) {
    throw new DicomRejection(ctx.file, 'truncated', `file ends inside the file meta header (${bytes.length} bytes)`);
  }
  const rest = bytes.subarray(datasetStart);
  const guess = guessRawDataset(rest, { afterFileMeta: true });
  if (guess === undefined) {
    throw new DicomRejection(ctx.file, 'not-dicom', 'file meta has no Transfer Syntax UID (0002,0010) and the dataset encoding is not recognisable');
  }
  return { ...parseRaw(rest, guess.transferSyntaxUid, ctx), hasFileMeta: true };
}

function parseRaw(bytes: Uint8Array, uid: string, ctx: ParseContext): ParsedStructure {
  rejectUnknownSyntax(ctx.file, uid, ctx.codecs);
  const parsed = attempt(bytes, { TransferSyntaxUID: uid });
  // The first elements were checked for a consistent structure before we got here, so this is DICOM too.
  if (!parsed.ok) throw parseFailure(ctx.file, bytes, parsed.error, 'dataset without file meta', 'corrupt');
  return { dataSet: parsed.dataSet, transferSyntaxUid: uid, hasFileMeta: false };
}

/** Finds how the file is stored (Part 10, Part 10 without preamble, or a bare dataset) and parses it. */
export function parseStructure(bytes: Uint8Array, ctx: ParseContext): ParsedStructure {
  if (hasPart10Prefix(bytes)) return parsePart10(bytes, ctx);
  if (bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1]) {
    throw new DicomRejection(ctx.file, 'not-dicom', 'gzip-compressed data, not DICOM (decompress it before import)');
  }
  const guess = guessRawDataset(bytes);
  if (guess === undefined) {
    throw new DicomRejection(ctx.file, 'not-dicom', `not DICOM: no 'DICM' prefix at byte 128 and no recognisable dataset at the start (${bytes.length} bytes)`);
  }
  if (guess.startsWithFileMeta) {
    // Part 10 without the preamble: restore the 128-byte preamble and 'DICM' so the regular path applies.
    const restored = new Uint8Array(DICM_OFFSET + 4 + bytes.length - guess.offset);
    restored.set([0x44, 0x49, 0x43, 0x4d], DICM_OFFSET);
    restored.set(bytes.subarray(guess.offset), DICM_OFFSET + 4);
    return parsePart10(restored, ctx);
  }
  return parseRaw(bytes.subarray(guess.offset), guess.transferSyntaxUid, ctx);
}
