import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import { testdata } from './reference.testkit.js';
import { endOfFileMeta } from './sniff.js';

/** Explicit VRs with 2 reserved bytes and a 32-bit length (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

/**
 * Test support for damaging real files from the shared corpus in controlled ways: change one element's length,
 * drop an element, pad or stretch an encapsulated fragment. Excluded from the build.
 */

export const corpus = (name: string): Buffer => Buffer.from(readFileSync(join(testdata, name)));

/** Where an element's length field sits and how wide it is (2 bytes for short explicit VRs, else 4). */
export function lengthField(bytes: Buffer, tag: string): { at: number; width: 2 | 4; header: number; length: number; dataOffset: number } {
  const element = dicomParser.parseDicom(bytes).elements[tag];
  if (element === undefined) throw new Error(`no element ${tag}`);
  const width = element.vr === undefined || LONG_VRS.has(element.vr) ? 4 : 2;
  // Implicit VR: tag + 32-bit length; explicit: tag + VR + 16-bit length, or + 2 reserved bytes + 32-bit length.
  const header = element.vr === undefined ? 8 : width === 2 ? 8 : 12;
  return { at: element.dataOffset - width, width, header, length: element.length, dataOffset: element.dataOffset };
}

/** A copy with the element's length field set to `length`; the bytes themselves stay where they are. */
export function withLength(bytes: Buffer, tag: string, length: number): Buffer {
  const field = lengthField(bytes, tag);
  const copy = Buffer.from(bytes);
  if (field.width === 2) copy.writeUInt16LE(length, field.at);
  else copy.writeUInt32LE(length, field.at);
  return copy;
}

/** A copy without the element (header and value), for a top-level element of a little-endian dataset. */
export function withoutElement(bytes: Buffer, tag: string): Buffer {
  const field = lengthField(bytes, tag);
  return Buffer.concat([bytes.subarray(0, field.dataOffset - field.header), bytes.subarray(field.dataOffset + field.length)]);
}

/** The dataset of a Part 10 file without preamble, 'DICM' and file meta: what an ACR-NEMA era file looks like. */
export function bareDataset(bytes: Buffer): Buffer {
  return Buffer.from(bytes.subarray(endOfFileMeta(bytes, 132)));
}

/** The last fragment of encapsulated Pixel Data: its item header, its data, and the Sequence Delimitation Item. */
export function lastFragment(bytes: Buffer): { item: number; data: number; length: number; delimiter: number } {
  const element = dicomParser.parseDicom(bytes).elements.x7fe00010;
  const fragment = element?.fragments?.at(-1);
  if (fragment === undefined) throw new Error('no encapsulated Pixel Data');
  return { item: fragment.position - 8, data: fragment.position, length: fragment.length, delimiter: fragment.position + fragment.length };
}

/** A copy whose last fragment ends with `tail` (its item length adjusted), as archives that pad after EOI write. */
export function withFragmentTail(bytes: Buffer, tail: readonly number[], trim = 0): Buffer {
  const { item, data, length, delimiter } = lastFragment(bytes);
  const kept = bytes.subarray(data, data + length - trim);
  const head = Buffer.from(bytes.subarray(0, data));
  head.writeUInt32LE(kept.length + tail.length, item + 4);
  return Buffer.concat([head, kept, Buffer.from(tail), bytes.subarray(delimiter)]);
}
