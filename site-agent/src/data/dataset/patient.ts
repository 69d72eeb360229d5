import { createHash } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { DataSet } from 'dicom-parser';
import { endOfFileMeta, guessRawDataset } from '../dicom/sniff.js';

/**
 * Patient ID (0010,0020), read only to keep a patient's images on one side of the train/validation split.
 * DicomHeader does not carry it, so it is read here with a second parse that stops at the tag (it lies near the
 * start of the dataset, before the pixels). The ID itself is reduced to a pseudonym at once and never stored,
 * logged or sent; only the pseudonym is cached with the tensor, at the site.
 */
const PATIENT_ID = 'x00100020';
const TRANSFER_SYNTAX_UID = 'x00020010';
const DICM_OFFSET = 128;

const DICM = [0x44, 0x49, 0x43, 0x4d] as const;

function hasPart10Prefix(bytes: Uint8Array): boolean {
  return DICM.every((b, i) => bytes[DICM_OFFSET + i] === b);
}

/** Deflated Explicit VR LE, handled as the reader does: header bytes kept, the rest inflated after them. */
function inflater(byteArray: Uint8Array, position: number): Uint8Array {
  const inflated = inflateRawSync(byteArray.subarray(position));
  const full = new Uint8Array(position + inflated.length);
  full.set(byteArray.subarray(0, position), 0);
  full.set(inflated, position);
  return full;
}

/** Bare datasets (no preamble, no file meta, or file meta without a syntax) are found the way the reader finds them. */
function parseRaw(bytes: Uint8Array, afterFileMeta: boolean): DataSet | undefined {
  const guess = guessRawDataset(bytes, { afterFileMeta });
  if (guess === undefined) return undefined;
  if (guess.startsWithFileMeta && !afterFileMeta) {
    const restored = new Uint8Array(DICM_OFFSET + 4 + bytes.length - guess.offset);
    restored.set(DICM, DICM_OFFSET);
    restored.set(bytes.subarray(guess.offset), DICM_OFFSET + 4);
    return parseUntilPatientId(restored);
  }
  return dicomParser.parseDicom(bytes.subarray(guess.offset), { TransferSyntaxUID: guess.transferSyntaxUid, untilTag: PATIENT_ID });
}

function parseUntilPatientId(bytes: Uint8Array): DataSet | undefined {
  if (!hasPart10Prefix(bytes)) return parseRaw(bytes, false);
  const syntax = dicomParser.readPart10Header(bytes).string(TRANSFER_SYNTAX_UID);
  if (syntax !== undefined && syntax.length > 0) return dicomParser.parseDicom(bytes, { untilTag: PATIENT_ID, inflater });
  return parseRaw(bytes.subarray(endOfFileMeta(bytes, DICM_OFFSET + 4)), true);
}

/**
 * The Patient ID of a DICOM file the reader has already accepted, or undefined when it has none (absent or
 * empty) or it cannot be read; the image is then grouped by its study instead, which is never worse than before.
 */
export function readPatientId(bytes: Uint8Array): string | undefined {
  let dataSet: DataSet | undefined;
  try {
    dataSet = parseUntilPatientId(bytes);
  } catch {
    return undefined;
  }
  const id = dataSet?.string(PATIENT_ID)?.trim();
  return id !== undefined && id.length > 0 ? id : undefined;
}

/** A stable pseudonym for a Patient ID (SHA-256, lower-case hex): equal IDs give equal keys on every run. */
export function patientKeyOf(patientId: string): string {
  return createHash('sha256').update('federa-patient\0').update(patientId, 'utf8').digest('hex');
}
