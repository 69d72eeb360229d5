import { createHash, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { C1PartSum, c1PartBytes, updateC1Part, updateC1Sha256 } from './c1-parts.js';
import { deriveMultipartyParameters } from './params.js';
import { decodeCiphertexts, decodePolys, encodeCiphertexts, encodePolys, encryptVector, MultipartyPayloadError, readPayloadHeader, sumUpdates } from './payload.js';
import { collectivePublicKey, commonPolynomial, keyShare, ringOf } from './protocol.js';
import { SeededStream } from './ring.js';

/** The c1Sha256 of the first update below (fixed seeds): pins the part's format, which sites sign. */
const PINNED_C1_SHA256 = 'aee63d046df9ef22e0ad4fa806a68d869260cb577bacd292f6fd8023f91e1a99';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

describe('c1 parts: an update\'s c1 alone, which members sum to check the c1 they switch', () => {
  const params = deriveMultipartyParameters();
  const ring = ringOf(params);
  // Two and a half ciphertexts: the last one's c0 is cut short, its c1 is whole.
  const valueCount = ring.n * 2.5;
  const header = { epoch: 3, valueCount };
  const seeded = (label: string, byte: number): SeededStream => new SeededStream(new Uint8Array(32).fill(byte), label);
  let key: { p: Uint32Array; a: Uint32Array };
  let updates: Uint8Array[];

  const update = (random: SeededStream): Uint8Array => {
    const values = Float64Array.from({ length: valueCount }, (_, i) => Math.sin(i) / 4);
    return encodeCiphertexts(ring, params, 'update', header, encryptVector(ring, params, key, values, random));
  };

  beforeAll(() => {
    const a = commonPolynomial(ring, new Uint8Array(32).fill(7), { studyId: 'study-1', epoch: 3 });
    const shares = [1, 2, 3].map((byte) => keyShare(ring, a, seeded('key-share', byte)).publicShare);
    key = { p: collectivePublicKey(ring, shares), a };
    updates = [11, 12, 13].map((byte) => update(seeded('encrypt', byte)));
  });

  it('is the update\'s header as an update-c1 blob, then exactly each ciphertext\'s c1, and re-encodes to the same bytes', () => {
    const part = updateC1Part(ring, params, updates[0]!, header);
    expect(part.byteLength).toBe(c1PartBytes(ring, params, valueCount));
    expect(readPayloadHeader(params, part)).toEqual({ kind: 'update-c1', ...header });
    const c1s = decodeCiphertexts(ring, params, 'update', updates[0]!).ciphertexts.map((ct) => ct.c1);
    const decoded = decodePolys(ring, params, 'update-c1', part, header).polys;
    expect(decoded).toHaveLength(3);
    decoded.forEach((poly, k) => expect(poly).toEqual(c1s[k]));
    expect(Buffer.compare(encodePolys(ring, params, 'update-c1', header, c1s), part)).toBe(0);
    // Every ciphertext's c1 is whole: the part is the size of a sum-c1 blob, less than the update.
    expect(part.byteLength).toBe(encodePolys(ring, params, 'sum-c1', header, c1s).byteLength);
    expect(part.byteLength).toBeLessThan(updates[0]!.byteLength);
  });

  it('hashes alike every time, for these exact bytes, and only its c1 bytes move it', () => {
    const digest = updateC1Sha256(ring, params, updates[0]!);
    expect(digest).toBe(sha256(updateC1Part(ring, params, updates[0]!)));
    expect(updateC1Sha256(ring, params, new Uint8Array(updates[0]!))).toBe(digest);
    // Fixed seeds, fixed parameters: the format is pinned (a change here is a change of what sites sign).
    expect(digest).toBe(PINNED_C1_SHA256);
    expect(updateC1Sha256(ring, params, update(new SeededStream(randomBytes(32), 'encrypt')))).not.toBe(digest);
    const c0Byte = updates[0]!.slice();
    c0Byte[48] = (c0Byte[48]! + 1) & 0xff;
    expect(updateC1Sha256(ring, params, c0Byte)).toBe(digest);
    const c1Byte = updates[0]!.slice();
    c1Byte[c1Byte.length - 1] = (c1Byte[c1Byte.length - 1]! + 1) & 0xff;
    expect(updateC1Sha256(ring, params, c1Byte)).not.toBe(digest);
  });

  it('refuses a blob that is not an update of the expected epoch and length', () => {
    const part = updateC1Part(ring, params, updates[0]!);
    expect(() => updateC1Part(ring, params, part)).toThrow(/expected an update payload, got an update-c1 payload/);
    expect(() => updateC1Part(ring, params, updates[0]!, { epoch: 4 })).toThrow(MultipartyPayloadError);
    expect(() => updateC1Part(ring, params, updates[0]!.subarray(0, updates[0]!.length - 1))).toThrow(/TRUNCATED|bytes, got/);
  });

  it('sums, one part at a time, to the coordinator\'s sum-c1 blob byte for byte; one part fewer does not', () => {
    const coordinator = sumUpdates(ring, params, header, updates).c1;
    const total = new C1PartSum(ring, params, header);
    for (const u of updates) total.add(updateC1Part(ring, params, u));
    expect(total.count).toBe(3);
    expect(Buffer.compare(total.encode(), coordinator)).toBe(0);
    expect(sha256(total.encode())).toBe(sha256(coordinator));

    const short = new C1PartSum(ring, params, header);
    for (const u of updates.slice(1)) short.add(updateC1Part(ring, params, u));
    expect(short.count).toBe(2);
    expect(sha256(short.encode())).not.toBe(sha256(coordinator));
    // The same parts in another order: the same bytes.
    const reversed = new C1PartSum(ring, params, header);
    for (const u of [...updates].reverse()) reversed.add(updateC1Part(ring, params, u));
    expect(Buffer.compare(reversed.encode(), coordinator)).toBe(0);
  });

  it('refuses a part of another kind or epoch, or with a residue out of range, and leaves the sum as it was', () => {
    const total = new C1PartSum(ring, params, header);
    total.add(updateC1Part(ring, params, updates[0]!));
    const before = total.encode();
    expect(() => total.add(updates[1]!)).toThrow(/expected an update-c1 payload, got an update payload/);
    const otherEpoch = updateC1Part(ring, params, updates[1]!);
    otherEpoch[40] = 9;
    expect(() => total.add(otherEpoch)).toThrow(/epoch 9, not 3/);
    // The last ciphertext's residues all ones: not below their primes.
    const corrupt = updateC1Part(ring, params, updates[1]!);
    corrupt.fill(0xff, corrupt.length - 64);
    expect(() => total.add(corrupt)).toThrow(/ciphertext 2/);
    expect(total.count).toBe(1);
    expect(Buffer.compare(total.encode(), before)).toBe(0);
  });
});
