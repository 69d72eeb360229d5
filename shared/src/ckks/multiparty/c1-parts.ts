import { createHash } from 'node:crypto';
import type { MultipartyParameters } from './params.js';
import { allocatePayload, bodyOffset, ciphertextCount, encodePolys, openPayload, payloadBytes, readPoly, usedIn, type PayloadHeader } from './payload.js';
import type { RnsRing } from './ring.js';
import { residueBytes, roundedBytes } from './wire.js';

/**
 * An update's c1 part: what an epoch member needs to check that the c1 it is asked to key-switch is the sum of the
 * listed updates, without their c0 (switched, a c0 would give that update away). It is a blob of kind 'update-c1':
 * the 48-byte payload header (the update's parameters, epoch and valueCount), then each ciphertext's c1 residues
 * byte for byte as the update holds them. An update's c1 always travels whole, so these bodies are laid out as a
 * sum-c1 blob's are, and adding the parts of the updates summed gives exactly the sum-c1 blob the coordinator sends.
 * A site signs the part's SHA-256 (c1Sha256) with its update; the coordinator checks it and serves the part.
 */

/** Bytes of the c1 part of an update of `valueCount` values. */
export function c1PartBytes(ring: RnsRing, params: MultipartyParameters, valueCount: number): number {
  return payloadBytes(ring, params, 'update-c1', valueCount);
}

/**
 * The c1 part of an update blob (header and length checked, as openPayload does). Its residues are copied, not
 * decoded: for an update whose residues were checked (the coordinator's upload check) that is the same bytes.
 */
export function updateC1Part(ring: RnsRing, params: MultipartyParameters, update: Uint8Array, expect: { epoch?: number; valueCount?: number } = {}): Uint8Array {
  const header = openPayload(ring, params, 'update', update, expect);
  const out = allocatePayload(ring, params, 'update-c1', header);
  const size = residueBytes(ring);
  for (let k = 0; k < ciphertextCount(ring, header.valueCount); k++) {
    // In an update, ciphertext k's c1 follows its rounded c0 of used_k coefficients.
    const from = bodyOffset(ring, params, 'update', k) + roundedBytes(ring, params.droppedBits.c0, usedIn(ring, header.valueCount, k));
    out.set(update.subarray(from, from + size), bodyOffset(ring, params, 'update-c1', k));
  }
  return out;
}

/** SHA-256 (hex) of an update's c1 part: the c1Sha256 of its contribution statement. */
export function updateC1Sha256(ring: RnsRing, params: MultipartyParameters, update: Uint8Array, expect: { epoch?: number; valueCount?: number } = {}): string {
  return createHash('sha256').update(updateC1Part(ring, params, update, expect)).digest('hex');
}

/**
 * A running sum of c1 parts, added one at a time so a member holds one part, not every update, while it checks a
 * sum. Each ciphertext is added mod every RNS prime with ring.add, as sumUpdates adds the updates' c1, and the sum
 * is written as a sum-c1 blob by the same encoder: the same parts give the same bytes.
 */
export class C1PartSum {
  private readonly polys: Uint32Array[];
  private added = 0;

  constructor(
    private readonly ring: RnsRing,
    private readonly params: MultipartyParameters,
    /** The sum's header: every part must be of this epoch and length. */
    readonly header: Pick<PayloadHeader, 'epoch' | 'valueCount'>,
  ) {
    this.polys = Array.from({ length: ciphertextCount(ring, header.valueCount) }, () => ring.zero());
  }

  /** Parts added so far. */
  get count(): number {
    return this.added;
  }

  /** Checks a c1 part (kind, parameters, epoch, length, every residue below its prime) and adds it. */
  add(part: Uint8Array): void {
    const { ring, params, header } = this;
    openPayload(ring, params, 'update-c1', part, header);
    // Every ciphertext is read before any is added: a part refused halfway leaves the sum as it was.
    const polys = this.polys.map((_, k) => readPoly(ring, params, 'update-c1', part, header.valueCount, k));
    polys.forEach((poly, k) => ring.add(this.polys[k] as Uint32Array, poly, this.polys[k] as Uint32Array));
    this.added++;
  }

  /** The sum as a sum-c1 blob. */
  encode(): Uint8Array {
    return encodePolys(this.ring, this.params, 'sum-c1', { epoch: this.header.epoch, valueCount: this.header.valueCount }, this.polys);
  }
}
