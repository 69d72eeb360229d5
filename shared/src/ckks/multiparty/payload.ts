import { multipartyFingerprint } from './key-shares.js';
import type { MultipartyParameters } from './params.js';
import { applyKeySwitch, decrypt, encrypt, keySwitchShare, type Ciphertext } from './protocol.js';
import type { RnsRing, SeededStream } from './ring.js';
import { packResidues, packRounded, residueBytes, roundedBits, roundedBytes, unpackResidues, unpackRounded } from './wire.js';

/**
 * The wire formats of multiparty vectors. A model's parameters span many ciphertexts of ring.n values each: value i
 * is in ciphertext floor(i / n), coefficient i mod n. Every blob is a 48-byte header, then its ciphertexts in order:
 *
 *   0  'FMP1'   4  kind u8   5  three zero bytes   8  parameters fingerprint (32 bytes)   40  epoch u32 LE
 *   44  valueCount u32 LE
 *
 * Bodies, per ciphertext k (used_k = the values it holds, n except perhaps in the last):
 * - update: c0 rounded (used_k coefficients), c1 as residues (whole: it multiplies the key)
 * - sum-c0, sum-c1: the coordinator's sums as residues
 * - share: a key-switching share rounded (used_k coefficients)
 * - model: c0' = C0 + sum h_i rounded like an update's c0 (used_k coefficients), and C1 as residues
 * - update-c1: an update's c1 residues alone (c1-parts.ts), what a member sums to check the sum-c1 it is sent
 * A blob binds its kind, parameters, epoch and length, so one is never read as another.
 */

export type PayloadKind = 'update' | 'sum-c0' | 'sum-c1' | 'share' | 'model' | 'update-c1';

/** The kinds whose bodies are one polynomial per ciphertext. */
export type PolyKind = 'sum-c0' | 'sum-c1' | 'share' | 'update-c1';

export type PayloadErrorCode = 'TRUNCATED' | 'BAD_MAGIC' | 'WRONG_KIND' | 'WRONG_PARAMETERS' | 'WRONG_EPOCH' | 'WRONG_LENGTH' | 'CORRUPT';

export class MultipartyPayloadError extends Error {
  override readonly name = 'MultipartyPayloadError';
  constructor(
    readonly code: PayloadErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface PayloadHeader {
  kind: PayloadKind;
  epoch: number;
  valueCount: number;
}

const HEADER_BYTES = 48;
const MAGIC = [0x46, 0x4d, 0x50, 0x31]; // 'FMP1'
const KIND_BYTE: Readonly<Record<PayloadKind, number>> = { update: 1, 'sum-c0': 2, 'sum-c1': 3, share: 4, model: 5, 'update-c1': 6 };
const KIND_OF_BYTE = new Map<number, PayloadKind>(Object.entries(KIND_BYTE).map(([kind, byte]) => [byte, kind as PayloadKind]));
const U32_MAX = 0xffff_ffff;

/** "an update payload", "a share payload". */
const aPayload = (kind: PayloadKind): string => `${kind.startsWith('update') ? 'an' : 'a'} ${kind} payload`;

const fingerprints = new WeakMap<MultipartyParameters, Uint8Array>();

/** The parameters' fingerprint as 32 raw bytes, hashed once per parameter object (every blob carries it). */
function fingerprintBytes(params: MultipartyParameters): Uint8Array {
  let bytes = fingerprints.get(params);
  if (!bytes) {
    bytes = Buffer.from(multipartyFingerprint(params), 'hex');
    fingerprints.set(params, bytes);
  }
  return bytes;
}

function checkCounts(header: { epoch: number; valueCount: number }): void {
  if (!Number.isInteger(header.epoch) || header.epoch < 1 || header.epoch > U32_MAX) throw new RangeError(`epoch must be an integer in 1..${U32_MAX}, got ${header.epoch}`);
  if (!Number.isInteger(header.valueCount) || header.valueCount < 1 || header.valueCount > U32_MAX) {
    throw new RangeError(`valueCount must be an integer in 1..${U32_MAX}, got ${header.valueCount}`);
  }
}

export function ciphertextCount(ring: RnsRing, valueCount: number): number {
  if (!Number.isInteger(valueCount) || valueCount < 0) throw new RangeError(`valueCount must be a non-negative integer, got ${valueCount}`);
  return Math.ceil(valueCount / ring.n);
}

/** Values held by ciphertext k of a vector of valueCount values. */
export const usedIn = (ring: RnsRing, valueCount: number, k: number): number => Math.min(ring.n, valueCount - k * ring.n);

/** Bytes of one ciphertext's body of `kind` holding `used` values. */
function bodyBytes(ring: RnsRing, params: MultipartyParameters, kind: PayloadKind, used: number): number {
  switch (kind) {
    case 'update':
    case 'model':
      return roundedBytes(ring, params.droppedBits.c0, used) + residueBytes(ring);
    case 'sum-c0':
    case 'sum-c1':
    case 'update-c1':
      return residueBytes(ring);
    case 'share':
      return roundedBytes(ring, params.droppedBits.share, used);
  }
}

export function payloadBytes(ring: RnsRing, params: MultipartyParameters, kind: PayloadKind, valueCount: number): number {
  checkCounts({ epoch: 1, valueCount });
  const count = ciphertextCount(ring, valueCount);
  // Every ciphertext but the last is full.
  return HEADER_BYTES + (count - 1) * bodyBytes(ring, params, kind, ring.n) + bodyBytes(ring, params, kind, usedIn(ring, valueCount, count - 1));
}

/** Where ciphertext k's body starts: every body before it is a full one. */
export function bodyOffset(ring: RnsRing, params: MultipartyParameters, kind: PayloadKind, k: number): number {
  return HEADER_BYTES + k * bodyBytes(ring, params, kind, ring.n);
}

/** A zeroed blob of `kind` for `header`, its header written: the bodies are written one ciphertext at a time. */
export function allocatePayload(
  ring: RnsRing,
  params: MultipartyParameters,
  kind: PayloadKind,
  header: { epoch: number; valueCount: number },
  allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): Uint8Array {
  checkCounts(header);
  const out = allocate(payloadBytes(ring, params, kind, header.valueCount));
  writeHeader(params, kind, header, out);
  return out;
}

function writeHeader(params: MultipartyParameters, kind: PayloadKind, header: { epoch: number; valueCount: number }, out: Uint8Array): void {
  out.set(MAGIC, 0);
  out[4] = KIND_BYTE[kind];
  out.set(fingerprintBytes(params), 8);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(40, header.epoch, true);
  view.setUint32(44, header.valueCount, true);
}

/** Reads and checks a blob's header: its magic, kind byte, reserved bytes and parameters fingerprint. */
export function readPayloadHeader(params: MultipartyParameters, bytes: Uint8Array): PayloadHeader {
  if (bytes.length < HEADER_BYTES) throw new MultipartyPayloadError('TRUNCATED', `a multiparty payload starts with a ${HEADER_BYTES}-byte header, got ${bytes.length} bytes`);
  if (MAGIC.some((b, i) => bytes[i] !== b)) throw new MultipartyPayloadError('BAD_MAGIC', `not a multiparty payload: it does not start with "FMP1"`);
  const kind = KIND_OF_BYTE.get(bytes[4] as number);
  if (!kind) throw new MultipartyPayloadError('WRONG_KIND', `kind byte ${bytes[4]} is none of ${[...KIND_OF_BYTE].map(([b, k]) => `${b} (${k})`).join(', ')}`);
  if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new MultipartyPayloadError('CORRUPT', 'header bytes 5..7 must be zero');
  const fingerprint = fingerprintBytes(params);
  if (fingerprint.some((b, i) => bytes[8 + i] !== b)) {
    throw new MultipartyPayloadError('WRONG_PARAMETERS', `the ${kind} payload is for other CKKS parameters (fingerprint ${Buffer.from(bytes.subarray(8, 40)).toString('hex')}, not ${Buffer.from(fingerprint).toString('hex')})`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const epoch = view.getUint32(40, true);
  const valueCount = view.getUint32(44, true);
  if (epoch === 0) throw new MultipartyPayloadError('CORRUPT', `the ${kind} payload's epoch is 0`);
  if (valueCount === 0) throw new MultipartyPayloadError('CORRUPT', `the ${kind} payload holds no values`);
  return { kind, epoch, valueCount };
}

/** The header, checked against the kind and expectations, and the blob's exact length. */
export function openPayload(ring: RnsRing, params: MultipartyParameters, kind: PayloadKind, bytes: Uint8Array, expect: { epoch?: number; valueCount?: number }): PayloadHeader {
  const header = readPayloadHeader(params, bytes);
  if (header.kind !== kind) throw new MultipartyPayloadError('WRONG_KIND', `expected ${aPayload(kind)}, got ${aPayload(header.kind)}`);
  if (expect.epoch !== undefined && header.epoch !== expect.epoch) throw new MultipartyPayloadError('WRONG_EPOCH', `the ${kind} payload is for epoch ${header.epoch}, not ${expect.epoch}`);
  if (expect.valueCount !== undefined && header.valueCount !== expect.valueCount) {
    throw new MultipartyPayloadError('WRONG_LENGTH', `the ${kind} payload holds ${header.valueCount} values, not ${expect.valueCount}`);
  }
  const expected = payloadBytes(ring, params, kind, header.valueCount);
  if (bytes.length !== expected) {
    throw new MultipartyPayloadError(
      bytes.length < expected ? 'TRUNCATED' : 'WRONG_LENGTH',
      `${aPayload(kind)} of ${header.valueCount} values is ${expected} bytes, got ${bytes.length}`,
    );
  }
  return header;
}

/** Reads a residue polynomial, its RangeError (a residue not below its prime) as CORRUPT where it was. */
function readResidues(ring: RnsRing, bytes: Uint8Array, at: number, where: string): { poly: Uint32Array; next: number } {
  try {
    return unpackResidues(ring, bytes, at);
  } catch (error) {
    if (error instanceof RangeError) throw new MultipartyPayloadError('CORRUPT', `${where}: ${error.message}`);
    throw error;
  }
}

/** Reads a rounded polynomial of `used` coefficients; the pad bits after the last one must be zero (one blob per content). */
function readRounded(ring: RnsRing, bytes: Uint8Array, at: number, dropped: number, used: number, where: string): { poly: Uint32Array; next: number } {
  const read = unpackRounded(ring, bytes, at, dropped, used);
  const padBits = 8 * (read.next - at) - used * roundedBits(ring, dropped);
  if (padBits > 0 && (bytes[read.next - 1] as number) >>> (8 - padBits) !== 0) throw new MultipartyPayloadError('CORRUPT', `${where}: the padding bits after the last coefficient are not zero`);
  return read;
}

/** Runs `read`, a refusal in it prefixed with which blob it was about ("update 2: ..."). */
export function labelled<T>(label: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof MultipartyPayloadError) throw new MultipartyPayloadError(error.code, `${label}: ${error.message}`);
    throw error;
  }
}

/** Ciphertext k of an update or model blob whose header openPayload checked. */
export function readCiphertext(ring: RnsRing, params: MultipartyParameters, kind: 'update' | 'model', bytes: Uint8Array, valueCount: number, k: number): Ciphertext {
  const at = bodyOffset(ring, params, kind, k);
  const c0 = readRounded(ring, bytes, at, params.droppedBits.c0, usedIn(ring, valueCount, k), `ciphertext ${k}, c0`);
  return { c0: c0.poly, c1: readResidues(ring, bytes, c0.next, `ciphertext ${k}, c1`).poly };
}

/**
 * Writes ciphertext k into its place in a blob from allocatePayload. c0 travels rounded to 2^droppedBits.c0: an
 * update's is a multiple already (encrypt() makes it so); a model's C0' is rounded here, an error the parameters
 * count (PARAMETERS.md) and that needs no smudging, since it is a function of C0', which the coordinator computed.
 */
export function writeCiphertext(ring: RnsRing, params: MultipartyParameters, kind: 'update' | 'model', valueCount: number, k: number, ct: Ciphertext, out: Uint8Array): void {
  const at = bodyOffset(ring, params, kind, k);
  const next = packRounded(ring, ct.c0, params.droppedBits.c0, out, at, usedIn(ring, valueCount, k));
  packResidues(ring, ct.c1, out, next);
}

/** Polynomial k of a sum, share or update-c1 blob whose header openPayload checked. */
export function readPoly(ring: RnsRing, params: MultipartyParameters, kind: PolyKind, bytes: Uint8Array, valueCount: number, k: number): Uint32Array {
  const at = bodyOffset(ring, params, kind, k);
  const read =
    kind === 'share'
      ? readRounded(ring, bytes, at, params.droppedBits.share, usedIn(ring, valueCount, k), `ciphertext ${k}`)
      : readResidues(ring, bytes, at, `ciphertext ${k}`);
  return read.poly;
}

export function writePoly(ring: RnsRing, params: MultipartyParameters, kind: PolyKind, valueCount: number, k: number, poly: Uint32Array, out: Uint8Array): void {
  const at = bodyOffset(ring, params, kind, k);
  if (kind === 'share') packRounded(ring, poly, params.droppedBits.share, out, at, usedIn(ring, valueCount, k));
  else packResidues(ring, poly, out, at);
}

function checkVectorLength(ring: RnsRing, what: string, got: number, valueCount: number): void {
  const count = ciphertextCount(ring, valueCount);
  if (got !== count) throw new RangeError(`${valueCount} values take ${count} ${what}, got ${got}`);
}

/** Encrypts a vector under the collective key, ring.n values per ciphertext. */
export function encryptVector(
  ring: RnsRing,
  params: MultipartyParameters,
  key: { p: Uint32Array; a: Uint32Array },
  values: ArrayLike<number>,
  random: SeededStream,
): Ciphertext[] {
  if (values.length < 1) throw new RangeError('a vector needs at least one value');
  const out: Ciphertext[] = [];
  for (let start = 0; start < values.length; start += ring.n) {
    const chunk = new Float64Array(Math.min(ring.n, values.length - start));
    for (let i = 0; i < chunk.length; i++) chunk[i] = values[start + i] as number;
    out.push(encrypt(ring, params, key, chunk, random));
  }
  return out;
}

export function decryptVector(ring: RnsRing, params: MultipartyParameters, ciphertexts: readonly Ciphertext[], key: Uint32Array, valueCount: number): Float64Array {
  checkCounts({ epoch: 1, valueCount });
  checkVectorLength(ring, 'ciphertexts', ciphertexts.length, valueCount);
  const out = new Float64Array(valueCount);
  ciphertexts.forEach((ct, k) => out.set(decrypt(ring, params, ct, key, usedIn(ring, valueCount, k)), k * ring.n));
  return out;
}

/**
 * An update or a model: c0 rounded, c1 whole. An update's c0 must be a multiple of 2^droppedBits.c0, as encrypt()
 * makes it: the rest would be rounded away. A model's C0' is rounded here.
 */
export function encodeCiphertexts(
  ring: RnsRing,
  params: MultipartyParameters,
  kind: 'update' | 'model',
  header: { epoch: number; valueCount: number },
  cts: readonly Ciphertext[],
): Uint8Array {
  checkCounts(header);
  checkVectorLength(ring, 'ciphertexts', cts.length, header.valueCount);
  const out = allocatePayload(ring, params, kind, header);
  cts.forEach((ct, k) => writeCiphertext(ring, params, kind, header.valueCount, k, ct, out));
  return out;
}

export function decodeCiphertexts(
  ring: RnsRing,
  params: MultipartyParameters,
  kind: 'update' | 'model',
  bytes: Uint8Array,
  expect: { epoch?: number; valueCount?: number } = {},
): { header: PayloadHeader; ciphertexts: Ciphertext[] } {
  const header = openPayload(ring, params, kind, bytes, expect);
  const ciphertexts = Array.from({ length: ciphertextCount(ring, header.valueCount) }, (_, k) => readCiphertext(ring, params, kind, bytes, header.valueCount, k));
  return { header, ciphertexts };
}

/** Sums and c1 parts (residues) or key-switching shares (rounded to 2^droppedBits.share, as keySwitchShare makes them). */
export function encodePolys(
  ring: RnsRing,
  params: MultipartyParameters,
  kind: PolyKind,
  header: { epoch: number; valueCount: number },
  polys: readonly Uint32Array[],
): Uint8Array {
  checkCounts(header);
  checkVectorLength(ring, 'polynomials', polys.length, header.valueCount);
  const out = allocatePayload(ring, params, kind, header);
  polys.forEach((poly, k) => writePoly(ring, params, kind, header.valueCount, k, poly, out));
  return out;
}

export function decodePolys(
  ring: RnsRing,
  params: MultipartyParameters,
  kind: PolyKind,
  bytes: Uint8Array,
  expect: { epoch?: number; valueCount?: number } = {},
): { header: PayloadHeader; polys: Uint32Array[] } {
  const header = openPayload(ring, params, kind, bytes, expect);
  const polys = Array.from({ length: ciphertextCount(ring, header.valueCount) }, (_, k) => readPoly(ring, params, kind, bytes, header.valueCount, k));
  return { header, polys };
}

/** Sum of update payloads (each decoded and checked) as its sum-c0 and sum-c1 blobs. */
export function sumUpdates(
  ring: RnsRing,
  params: MultipartyParameters,
  header: { epoch: number; valueCount: number },
  updates: Iterable<Uint8Array>,
): { c0: Uint8Array; c1: Uint8Array; count: number } {
  checkCounts(header);
  const cts = ciphertextCount(ring, header.valueCount);
  const c0 = Array.from({ length: cts }, () => ring.zero());
  const c1 = Array.from({ length: cts }, () => ring.zero());
  let count = 0;
  for (const update of updates) {
    // Which of the updates was refused, for the coordinator's log.
    const decoded = labelled(`update ${count}`, () => decodeCiphertexts(ring, params, 'update', update, header).ciphertexts);
    for (let k = 0; k < cts; k++) {
      const [sum0, sum1, ct] = [c0[k], c1[k], decoded[k]];
      if (!sum0 || !sum1 || !ct) throw new RangeError(`ciphertext ${k} is missing`);
      ring.add(sum0, ct.c0, sum0);
      ring.add(sum1, ct.c1, sum1);
    }
    count++;
  }
  if (count === 0) throw new RangeError('a sum needs at least one update');
  return { c0: encodePolys(ring, params, 'sum-c0', header, c0), c1: encodePolys(ring, params, 'sum-c1', header, c1), count };
}

/** C0 + sum of shares: the model blob (c0', c1). */
export function switchedModel(
  ring: RnsRing,
  params: MultipartyParameters,
  header: { epoch: number; valueCount: number },
  c0Blob: Uint8Array,
  c1Blob: Uint8Array,
  shareBlobs: readonly Uint8Array[],
): Uint8Array {
  checkCounts(header);
  if (shareBlobs.length === 0) throw new RangeError('a key switch needs at least one share');
  const c0 = decodePolys(ring, params, 'sum-c0', c0Blob, header).polys;
  const c1 = decodePolys(ring, params, 'sum-c1', c1Blob, header).polys;
  const shares = shareBlobs.map((blob, i) => labelled(`share ${i}`, () => decodePolys(ring, params, 'share', blob, header).polys));
  const model = c0.map((sum, k) =>
    applyKeySwitch(
      ring,
      { c0: sum, c1: c1[k] as Uint32Array },
      shares.map((s) => s[k] as Uint32Array),
    ),
  );
  return encodeCiphertexts(ring, params, 'model', header, model);
}

/** A site's key-switching share blob for a sum-c1 blob: keySwitchShare per ciphertext. */
export function shareForSum(
  ring: RnsRing,
  params: MultipartyParameters,
  secret: Uint32Array,
  modelKeyPart: Uint32Array | null,
  c1Blob: Uint8Array,
  random: SeededStream,
): Uint8Array {
  const { header, polys } = decodePolys(ring, params, 'sum-c1', c1Blob);
  const shares = polys.map((c1) => keySwitchShare(ring, params, secret, modelKeyPart, c1, random));
  return encodePolys(ring, params, 'share', { epoch: header.epoch, valueCount: header.valueCount }, shares);
}
