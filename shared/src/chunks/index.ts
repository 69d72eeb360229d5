import { createHash } from 'node:crypto';

/**
 * Large payloads (models, updates, ciphertexts) always travel as a stream of chunks well under gRPC's
 * 4 MiB message limit, never as one message.
 */
export const CHUNK_BYTES = 1024 * 1024;

export function* chunkBytes(bytes: Uint8Array, chunkSize = CHUNK_BYTES): Generator<Uint8Array> {
  if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`chunk size must be a positive integer`);
  for (let offset = 0; offset < bytes.byteLength; offset += chunkSize) {
    yield bytes.subarray(offset, Math.min(offset + chunkSize, bytes.byteLength));
  }
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;
