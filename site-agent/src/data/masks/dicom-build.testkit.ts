import { deflateRawSync } from 'node:zlib';

/**
 * Builds small DICOM files for mask tests in any native transfer syntax (explicit / implicit VR, little / big
 * endian, deflated), with nested sequences of defined length. Values are kept typed until encoding so the byte
 * order follows the syntax.
 */

export type Syntax = 'explicit-le' | 'implicit-le' | 'explicit-be' | 'deflated';

type Value =
  | { kind: 'text'; text: string }
  | { kind: 'numbers'; size: 2 | 4; values: readonly number[] }
  | { kind: 'at'; values: readonly number[] }
  /** Raw bytes in little-endian order; `word` 2 swaps each 16-bit word for big endian (OW). */
  | { kind: 'bytes'; data: Uint8Array; word: 1 | 2 };

export interface El {
  readonly tag: number;
  readonly vr: string;
  readonly value?: Value;
  readonly items?: readonly (readonly El[])[];
}

const TS_UIDS: Readonly<Record<Syntax, string>> = {
  'explicit-le': '1.2.840.10008.1.2.1',
  'implicit-le': '1.2.840.10008.1.2',
  'explicit-be': '1.2.840.10008.1.2.2',
  deflated: '1.2.840.10008.1.2.1.99',
};
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

export const text = (tag: number, vr: string, value: string): El => ({ tag, vr, value: { kind: 'text', text: value } });
export const us = (tag: number, ...values: number[]): El => ({ tag, vr: 'US', value: { kind: 'numbers', size: 2, values } });
export const ul = (tag: number, ...values: number[]): El => ({ tag, vr: 'UL', value: { kind: 'numbers', size: 4, values } });
export const at = (tag: number, ...values: number[]): El => ({ tag, vr: 'AT', value: { kind: 'at', values } });
export const ds = (tag: number, ...values: number[]): El => text(tag, 'DS', values.map(decimal).join('\\'));
export const is = (tag: number, ...values: number[]): El => text(tag, 'IS', values.join('\\'));
export const bytes = (tag: number, vr: 'OB' | 'OW', data: Uint8Array): El => ({ tag, vr, value: { kind: 'bytes', data, word: vr === 'OW' ? 2 : 1 } });
export const seq = (tag: number, ...items: (readonly El[])[]): El => ({ tag, vr: 'SQ', items });

/** DS allows 16 characters: keep as many significant digits as fit. */
export function decimal(value: number): string {
  for (let digits = 15; digits >= 1; digits--) {
    const candidate = String(Number(value.toPrecision(digits)));
    if (candidate.length <= 16) return candidate;
  }
  throw new RangeError(`cannot write ${value} as DS`);
}

/** Packs 0/1 pixels of consecutive frames into one LSB-first bit stream, padded to even length. */
export function packBits(bits: ArrayLike<number>): Uint8Array {
  const count = Math.ceil(bits.length / 8);
  const out = new Uint8Array(count + (count % 2));
  for (let i = 0; i < bits.length; i++) if (bits[i] !== 0) out[i >> 3] = (out[i >> 3] ?? 0) | (1 << (i & 7));
  return out;
}

function valueBytes(value: Value | undefined, vr: string, littleEndian: boolean): Uint8Array {
  if (value === undefined) return new Uint8Array(0);
  if (value.kind === 'text') {
    const padded = value.text.length % 2 === 1 ? value.text + (vr === 'UI' ? '\0' : ' ') : value.text;
    return new TextEncoder().encode(padded);
  }
  if (value.kind === 'bytes') {
    const data = value.data.length % 2 === 1 ? Uint8Array.from([...value.data, 0]) : value.data;
    if (littleEndian || value.word === 1) return data;
    const out = new Uint8Array(data.length);
    for (let i = 0; i + 1 < data.length; i += 2) [out[i], out[i + 1]] = [data[i + 1] ?? 0, data[i] ?? 0];
    return out;
  }
  const words = value.kind === 'at' ? value.values.flatMap((v) => [v >>> 16, v & 0xffff]) : value.values;
  const size = value.kind === 'at' ? 2 : value.size;
  const out = new Uint8Array(words.length * size);
  const view = new DataView(out.buffer);
  words.forEach((v, i) => (size === 2 ? view.setUint16(i * 2, v, littleEndian) : view.setUint32(i * 4, v, littleEndian)));
  return out;
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

function elementHeader(tag: number, vr: string, length: number, explicit: boolean, littleEndian: boolean): Uint8Array {
  const long = !explicit || LONG_VRS.has(vr);
  const out = new Uint8Array(explicit && long ? 12 : 8);
  const view = new DataView(out.buffer);
  view.setUint16(0, tag >>> 16, littleEndian);
  view.setUint16(2, tag & 0xffff, littleEndian);
  if (!explicit) view.setUint32(4, length, littleEndian);
  else {
    out[4] = vr.charCodeAt(0);
    out[5] = vr.charCodeAt(1);
    if (long) view.setUint32(8, length, littleEndian);
    else view.setUint16(6, length, littleEndian);
  }
  return out;
}

export function encodeDataset(elements: readonly El[], explicit: boolean, littleEndian: boolean): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const e of [...elements].sort((a, b) => (a.tag >>> 0) - (b.tag >>> 0))) {
    if (e.items !== undefined) {
      const body = concat(
        e.items.map((item) => {
          const content = encodeDataset(item, explicit, littleEndian);
          const head = new Uint8Array(8);
          const view = new DataView(head.buffer);
          view.setUint16(0, 0xfffe, littleEndian);
          view.setUint16(2, 0xe000, littleEndian);
          view.setUint32(4, content.length, littleEndian);
          return concat([head, content]);
        }),
      );
      chunks.push(elementHeader(e.tag, 'SQ', body.length, explicit, littleEndian), body);
      continue;
    }
    const value = valueBytes(e.value, e.vr, littleEndian);
    chunks.push(elementHeader(e.tag, e.vr, value.length, explicit, littleEndian), value);
  }
  return concat(chunks);
}

/** A Part 10 file: preamble, 'DICM', explicit little-endian file meta, then the dataset in `syntax`. */
export function part10(elements: readonly El[], sopClassUid: string, sopInstanceUid: string, syntax: Syntax = 'explicit-le'): Uint8Array {
  const meta = encodeDataset(
    [
      bytes(0x00020001, 'OB', Uint8Array.from([0, 1])),
      text(0x00020002, 'UI', sopClassUid),
      text(0x00020003, 'UI', sopInstanceUid),
      text(0x00020010, 'UI', TS_UIDS[syntax]),
      text(0x00020012, 'UI', '2.25.1'),
    ],
    true,
    true,
  );
  const groupLength = encodeDataset([ul(0x00020000, meta.length)], true, true);
  const littleEndian = syntax !== 'explicit-be';
  let dataset = encodeDataset([text(0x00080016, 'UI', sopClassUid), text(0x00080018, 'UI', sopInstanceUid), ...elements], syntax !== 'implicit-le', littleEndian);
  if (syntax === 'deflated') dataset = deflateRawSync(dataset);
  const preamble = new Uint8Array(132);
  preamble.set([0x44, 0x49, 0x43, 0x4d], 128);
  return concat([preamble, groupLength, meta, dataset]);
}
