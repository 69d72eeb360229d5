import { crc32 } from 'node:zlib';
import { CkksError } from './errors.js';
import { packedBytes } from './polyq.js';
import { SEED_BYTES } from './seal-format.js';

/**
 * The wire format of encrypted vectors (all integers little-endian):
 *
 *   0  magic "FDCK"            4  format version (u8)      5  kind (u8: 1 site update, 2 aggregate)
 *   6  c0 bits per coefficient 7  c1 bits (0 in an update: c1 is regenerated from the seeds)
 *   8  vector length (u32)     12 ciphertext count (u32)   16 sites summed (u32)   20 reserved (0)
 *   24 total payload bytes (u64)                           32 parameter fingerprint (SHA-256, 32 bytes)
 *   64 key id (16 bytes)       80 body                     end-4: CRC-32 of everything before it
 *
 * Update body: one 64-byte SEAL seed per ciphertext, then each ciphertext's c0 bit-packed.
 * Aggregate body: each ciphertext's c0 bit-packed, then each ciphertext's c1 bit-packed.
 *
 * No general-purpose compression: packed residues modulo q are uniformly random, so zstd cannot shrink them
 * (measured in PARAMETERS.md).
 */
export const PAYLOAD_MAGIC = 'FDCK';
export const PAYLOAD_VERSION = 1;
export const PAYLOAD_HEADER_BYTES = 80;
const CRC_BYTES = 4;
export const KEY_ID_BYTES = 16;

export type PayloadKind = 'update' | 'aggregate';
const KIND_CODES: Record<PayloadKind, number> = { update: 1, aggregate: 2 };

export interface PayloadHeader {
  kind: PayloadKind;
  c0Bits: number;
  c1Bits: number;
  vectorLength: number;
  ciphertextCount: number;
  siteCount: number;
  fingerprint: Uint8Array;
  keyId: Uint8Array;
}

/** Total bytes of a payload with this header for ring dimension n. */
export function payloadBytes(header: Omit<PayloadHeader, 'fingerprint' | 'keyId'>, n: number): number {
  const perCt =
    header.kind === 'update' ? SEED_BYTES + packedBytes(n, header.c0Bits) : packedBytes(n, header.c0Bits) + packedBytes(n, header.c1Bits);
  return PAYLOAD_HEADER_BYTES + header.ciphertextCount * perCt + CRC_BYTES;
}

/**
 * Allocates a payload (zero-filled, by `allocate` when given: worker threads write into shared memory) and
 * writes its header; the caller fills the body, then calls sealPayload.
 */
export function startPayload(
  header: PayloadHeader,
  n: number,
  allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): Uint8Array {
  const total = payloadBytes(header, n);
  const out = allocate(total);
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out.set(Buffer.from(PAYLOAD_MAGIC, 'latin1'), 0);
  v.setUint8(4, PAYLOAD_VERSION);
  v.setUint8(5, KIND_CODES[header.kind]);
  v.setUint8(6, header.c0Bits);
  v.setUint8(7, header.c1Bits);
  v.setUint32(8, header.vectorLength, true);
  v.setUint32(12, header.ciphertextCount, true);
  v.setUint32(16, header.siteCount, true);
  v.setBigUint64(24, BigInt(total), true);
  out.set(header.fingerprint, 32);
  out.set(header.keyId, 64);
  return out;
}

/** Writes the checksum; the payload is complete after this. */
export function sealPayload(payload: Uint8Array): Uint8Array {
  const end = payload.length - CRC_BYTES;
  new DataView(payload.buffer, payload.byteOffset, payload.byteLength).setUint32(end, crc32(payload.subarray(0, end)), true);
  return payload;
}

/**
 * Parses and checks a payload's framing: magic, version, declared length (truncation), checksum
 * (corruption), the parameter fingerprint, and that the header is consistent with itself for ring
 * dimension n. Whether it matches the receiver's key is the caller's check.
 */
export function readPayloadHeader(payload: Uint8Array, n: number, fingerprint: Uint8Array, verifyChecksum = true): PayloadHeader {
  if (!(payload instanceof Uint8Array)) throw new CkksError('CORRUPT', 'CKKS payload must be a Uint8Array');
  if (payload.length >= 4 && Buffer.from(payload.subarray(0, 4)).toString('latin1') !== PAYLOAD_MAGIC) {
    throw new CkksError('BAD_MAGIC', 'not a Federa CKKS payload (bad magic bytes)');
  }
  if (payload.length < PAYLOAD_HEADER_BYTES + CRC_BYTES) {
    throw new CkksError('TRUNCATED', `CKKS payload is truncated: ${payload.length} bytes, shorter than its ${PAYLOAD_HEADER_BYTES}-byte header`);
  }
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const version = v.getUint8(4);
  if (version !== PAYLOAD_VERSION) {
    throw new CkksError('UNSUPPORTED_VERSION', `CKKS payload format version ${version} is not supported (this build reads version ${PAYLOAD_VERSION})`);
  }
  const declared = v.getBigUint64(24, true);
  if (declared > BigInt(payload.length)) {
    throw new CkksError('TRUNCATED', `CKKS payload is truncated: ${payload.length} bytes of the ${declared} its header declares`);
  }
  if (declared < BigInt(payload.length)) {
    throw new CkksError('CORRUPT', `CKKS payload is corrupt: ${payload.length} bytes but its header declares ${declared}`);
  }
  const end = payload.length - CRC_BYTES;
  if (verifyChecksum && crc32(payload.subarray(0, end)) !== v.getUint32(end, true)) {
    throw new CkksError('CORRUPT', 'CKKS payload is corrupt: checksum mismatch (altered in transit or storage)');
  }
  const kindCode = v.getUint8(5);
  const kind = (Object.keys(KIND_CODES) as PayloadKind[]).find((k) => KIND_CODES[k] === kindCode);
  if (kind === undefined) throw new CkksError('CORRUPT', `CKKS payload has unknown kind ${kindCode}`);
  const header: PayloadHeader = {
    kind,
    c0Bits: v.getUint8(6),
    c1Bits: v.getUint8(7),
    vectorLength: v.getUint32(8, true),
    ciphertextCount: v.getUint32(12, true),
    siteCount: v.getUint32(16, true),
    fingerprint: payload.slice(32, 64),
    keyId: payload.slice(64, 64 + KEY_ID_BYTES),
  };
  // Before the structural checks: another N would make a foreign payload look malformed rather than foreign.
  if (!Buffer.from(header.fingerprint).equals(Buffer.from(fingerprint))) {
    throw new CkksError(
      'PARAMETER_MISMATCH',
      `CKKS payload was made for other parameters (fingerprint ${Buffer.from(header.fingerprint).toString('hex').slice(0, 16)}…, ` +
        `expected ${Buffer.from(fingerprint).toString('hex').slice(0, 16)}…)`,
    );
  }
  const malformed = (why: string): never => {
    throw new CkksError('CORRUPT', `CKKS payload is malformed: ${why}`);
  };
  if (v.getUint32(20, true) !== 0) malformed('reserved bytes are set');
  if (header.vectorLength < 1) malformed('empty vector');
  if (header.ciphertextCount !== Math.ceil(header.vectorLength / n)) {
    malformed(`${header.ciphertextCount} ciphertexts cannot hold ${header.vectorLength} values at ${n} per ciphertext`);
  }
  if (header.siteCount < 1) malformed('it sums no site');
  if (header.kind === 'update' && (header.siteCount !== 1 || header.c1Bits !== 0)) malformed('a site update must hold one site and no c1');
  if (header.c0Bits < 1 || header.c0Bits > 60 || header.c1Bits > 60 || (header.kind === 'aggregate' && header.c1Bits < 1)) malformed('bit widths');
  if (payloadBytes(header, n) !== payload.length) malformed('its length does not match its header');
  return header;
}
