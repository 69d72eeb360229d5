import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { CkksError } from './errors.js';
import { parametersFingerprint, type CkksParameters } from './params.js';
import { KEY_ID_BYTES } from './payload.js';

/**
 * Serialised key material. Both blobs start with the same parameter block, so a site or the coordinator
 * can rebuild the CKKS context from the blob it holds:
 *
 *   public parameters (coordinator): "FDPP" | version u8 | 3 reserved | parameter block (40) | key id (16) | CRC-32
 *   secret key (sites):              "FDSK" | version u8 | 3 reserved | parameter block (40) | key id (16) |
 *                                    SEAL key length u32 | SEAL SecretKey serialisation | CRC-32
 *
 * Parameter block: N u32 | q bits u8 | scale bits u8 | dropped bits u8 | reserved u8 | max sites u32 |
 * reserved u32 | max |value| f64 | q u64 | (8 reserved to 40).
 *
 * The public blob is 68 bytes: far too small to hold a secret key (2048 ternary coefficients carry at
 * least 406 bytes of entropy), and its key id is a hash, so it cannot decrypt anything.
 */
const PUBLIC_MAGIC = 'FDPP';
const SECRET_MAGIC = 'FDSK';
const VERSION = 1;
const PARAMS_AT = 8;
const PARAMS_BYTES = 40;
const KEY_ID_AT = PARAMS_AT + PARAMS_BYTES;
const PUBLIC_BYTES = KEY_ID_AT + KEY_ID_BYTES + 4;
const SEAL_KEY_AT = KEY_ID_AT + KEY_ID_BYTES + 4;

export interface KeyHeader {
  params: CkksParameters;
  /** The prime q the key set was made with. */
  modulus: bigint;
  keyId: Uint8Array;
}

/** A secret key blob taken apart (the SEAL bytes are still serialised). */
export interface SecretKeyParts extends KeyHeader {
  sealKey: Uint8Array;
}

/** 16-byte identifier of a key set: a hash of the secret key, safe to publish. */
export function keyIdOf(params: CkksParameters, sealKey: Uint8Array): Uint8Array {
  return createHash('sha256')
    .update('federa-ckks-key-id/v1\0')
    .update(parametersFingerprint(params))
    .update(sealKey)
    .digest()
    .subarray(0, KEY_ID_BYTES);
}

function writeParams(v: DataView, params: CkksParameters, modulus: bigint): void {
  v.setUint32(PARAMS_AT, params.polyModulusDegree, true);
  v.setUint8(PARAMS_AT + 4, params.coeffModulusBits);
  v.setUint8(PARAMS_AT + 5, params.scaleBits);
  v.setUint8(PARAMS_AT + 6, params.droppedBits);
  v.setUint32(PARAMS_AT + 8, params.maxSites, true);
  v.setFloat64(PARAMS_AT + 16, params.maxAbsValue, true);
  v.setBigUint64(PARAMS_AT + 24, modulus, true);
}

function readParams(v: DataView): { params: CkksParameters; modulus: bigint } {
  return {
    params: {
      polyModulusDegree: v.getUint32(PARAMS_AT, true),
      coeffModulusBits: v.getUint8(PARAMS_AT + 4),
      scaleBits: v.getUint8(PARAMS_AT + 5),
      droppedBits: v.getUint8(PARAMS_AT + 6),
      maxSites: v.getUint32(PARAMS_AT + 8, true),
      maxAbsValue: v.getFloat64(PARAMS_AT + 16, true),
    },
    modulus: v.getBigUint64(PARAMS_AT + 24, true),
  };
}

function frame(bytes: Uint8Array, magic: string, what: string, minBytes: number): DataView {
  if (!(bytes instanceof Uint8Array)) throw new CkksError('BAD_MAGIC', `${what} must be a Uint8Array`);
  if (bytes.length < 4 || Buffer.from(bytes.subarray(0, 4)).toString('latin1') !== magic) {
    throw new CkksError('BAD_MAGIC', `not a Federa CKKS ${what} (bad magic bytes)`);
  }
  if (bytes.length < minBytes) throw new CkksError('TRUNCATED', `CKKS ${what} is truncated: ${bytes.length} bytes`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint8(4) !== VERSION) throw new CkksError('UNSUPPORTED_VERSION', `CKKS ${what} version ${v.getUint8(4)} is not supported`);
  return v;
}

function checkCrc(bytes: Uint8Array, v: DataView, what: string): void {
  const end = bytes.length - 4;
  if (crc32(bytes.subarray(0, end)) !== v.getUint32(end, true)) {
    throw new CkksError('CORRUPT', `CKKS ${what} is corrupt: checksum mismatch`);
  }
}

export function writePublicParams(header: KeyHeader): Uint8Array {
  const out = new Uint8Array(PUBLIC_BYTES);
  const v = new DataView(out.buffer);
  out.set(Buffer.from(PUBLIC_MAGIC, 'latin1'), 0);
  v.setUint8(4, VERSION);
  writeParams(v, header.params, header.modulus);
  out.set(header.keyId, KEY_ID_AT);
  v.setUint32(PUBLIC_BYTES - 4, crc32(out.subarray(0, PUBLIC_BYTES - 4)), true);
  return out;
}

export function readPublicParams(bytes: Uint8Array): KeyHeader {
  const what = 'public parameters';
  const v = frame(bytes, PUBLIC_MAGIC, what, PUBLIC_BYTES);
  if (bytes.length !== PUBLIC_BYTES) throw new CkksError('CORRUPT', `CKKS ${what} have ${bytes.length} bytes, expected ${PUBLIC_BYTES}`);
  checkCrc(bytes, v, what);
  return { ...readParams(v), keyId: bytes.slice(KEY_ID_AT, KEY_ID_AT + KEY_ID_BYTES) };
}

export function writeSecretKey(parts: SecretKeyParts): Uint8Array {
  const total = SEAL_KEY_AT + parts.sealKey.length + 4;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set(Buffer.from(SECRET_MAGIC, 'latin1'), 0);
  v.setUint8(4, VERSION);
  writeParams(v, parts.params, parts.modulus);
  out.set(parts.keyId, KEY_ID_AT);
  v.setUint32(SEAL_KEY_AT - 4, parts.sealKey.length, true);
  out.set(parts.sealKey, SEAL_KEY_AT);
  v.setUint32(total - 4, crc32(out.subarray(0, total - 4)), true);
  return out;
}

export function readSecretKey(bytes: Uint8Array): SecretKeyParts {
  const what = 'secret key';
  const v = frame(bytes, SECRET_MAGIC, what, SEAL_KEY_AT + 4);
  const sealLength = v.getUint32(SEAL_KEY_AT - 4, true);
  if (bytes.length < SEAL_KEY_AT + sealLength + 4) throw new CkksError('TRUNCATED', `CKKS ${what} is truncated: ${bytes.length} bytes`);
  if (bytes.length > SEAL_KEY_AT + sealLength + 4) throw new CkksError('CORRUPT', `CKKS ${what} has trailing bytes`);
  checkCrc(bytes, v, what);
  const sealKey = bytes.slice(SEAL_KEY_AT, SEAL_KEY_AT + sealLength);
  const { params, modulus } = readParams(v);
  const keyId = bytes.slice(KEY_ID_AT, KEY_ID_AT + KEY_ID_BYTES);
  if (!Buffer.from(keyIdOf(params, sealKey)).equals(Buffer.from(keyId))) {
    throw new CkksError('CORRUPT', `CKKS ${what} is corrupt: its key id does not match the key`);
  }
  return { params, modulus, keyId, sealKey };
}

/** Reads just the parameters from either blob, to build a context before anything else. */
export function readKeyHeader(bytes: Uint8Array): KeyHeader {
  if (bytes.length >= 4 && Buffer.from(bytes.subarray(0, 4)).toString('latin1') === SECRET_MAGIC) return readSecretKey(bytes);
  return readPublicParams(bytes);
}

/** The CKKS parameters a key blob (secret key or public parameters) was made for. */
export function ckksParametersOf(key: Uint8Array): CkksParameters {
  return readKeyHeader(key).params;
}

/** The 16-byte id of the key set a key blob (secret key or public parameters) belongs to. */
export function ckksKeyIdOf(key: Uint8Array): Uint8Array {
  return readKeyHeader(key).keyId;
}
