import { createHash } from 'node:crypto';
import type { CkksContext } from './context.js';
import { CkksError } from './errors.js';
import { readKeyHeader } from './keys.js';
import { PAYLOAD_HEADER_BYTES, payloadBytes, sealPayload, startPayload, type PayloadHeader } from './payload.js';
import { packBits } from './polyq.js';
import { CiphertextReader } from './reader.js';
import { sealCall } from './seal.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * @internal Adds ciphertexts first..first+count-1 of a checked payload into their places in sum0 (c0, coefficient
 * form) and sum1 (c1, NTT form). Ciphertext addition is coefficient-wise addition modulo q, so the two are summed
 * separately and no transform is needed. Ranges are independent: threads add disjoint ones into shared sums.
 */
export function addRange(ctx: CkksContext, payload: Uint8Array, header: PayloadHeader, first: number, count: number, sum0: Uint32Array, sum1: Uint32Array): void {
  const n = ctx.valuesPerCiphertext;
  const reader = new CiphertextReader(ctx, payload, header);
  const c0 = new Uint32Array(2 * n);
  const c1 = new Uint32Array(2 * n);
  const zeroC0 = new Uint32Array(2 * n);
  const { seal, context, scratch, scale } = ctx.internals;
  for (let i = first; i < first + count; i++) {
    reader.c0(i, c0);
    if (header.kind === 'update') {
      // SEAL regenerates c1 from the seed when it loads a seeded ciphertext (c0 does not matter for that).
      const bytes = ctx.layout.writeCiphertext(zeroC0, 2, true, scale, reader.seed(i));
      const full = sealCall(seal, 'expanding a ciphertext seed', () => {
        scratch.loadFromArray(context, bytes);
        return scratch.saveToArray(seal.ComprModeType.none) as unknown;
      });
      if (!(full instanceof Uint8Array)) throw new CkksError('SEAL_ERROR', 'SEAL returned no byte array');
      ctx.layout.readPolyInto(full, 2, 1, c1);
    } else {
      reader.c1(i, c1);
    }
    const at = i * 2 * n;
    ctx.modulus.addInto(sum0.subarray(at, at + 2 * n), c0);
    ctx.modulus.addInto(sum1.subarray(at, at + 2 * n), c1);
  }
}

/** What a site's upload must be: one site's update of the round's length (a partial aggregate is not). */
export interface ExpectedUpdate {
  vectorLength: number;
}

/**
 * The coordinator's running sum of encrypted vectors, whatever computes it (one thread, or a worker pool). Holds
 * one ciphertext's worth of coefficients per N values whatever the number of sites, never a key that decrypts,
 * and checks every payload completely before adding it, so a refused payload leaves the sum as it was.
 */
export abstract class EncryptedSum {
  private readonly keyId: Uint8Array;
  protected sum0: Uint32Array | undefined;
  protected sum1: Uint32Array | undefined;
  private length: number | undefined;
  private summed = 0;
  private readonly seen = new Set<string>();
  private failed: Error | undefined;

  constructor(
    protected readonly ctx: CkksContext,
    publicParams: Uint8Array,
  ) {
    const header = readKeyHeader(publicParams);
    ctx.checkKeyHeader(header, 'public parameters');
    this.keyId = header.keyId;
  }

  /** Sites summed so far. */
  get sites(): number {
    return this.summed;
  }

  /** Length of the vectors being summed, once the first payload is in. */
  get vectorLength(): number | undefined {
    return this.length;
  }

  /**
   * Checks that a payload may join this sum, changing nothing: framing, checksum, key, length, the number of
   * sites the parameters can sum, that an update's ciphertexts have distinct seeds, and that it was not added before. Its coefficients are checked next, by range.
   */
  protected admit(payload: Uint8Array, expected?: ExpectedUpdate): { header: PayloadHeader; identity: string } {
    if (this.failed !== undefined) throw new CkksError('ACCUMULATOR_FAILED', `this sum is unusable after an earlier failure: ${this.failed.message}`);
    const header = this.ctx.checkPayload(payload, this.keyId);
    if (expected) {
      if (header.kind !== 'update' || header.siteCount !== 1) {
        throw new CkksError('CORRUPT', `a site uploads one update, not ${header.kind === 'aggregate' ? 'an aggregate' : 'an update'} of ${header.siteCount} sites`);
      }
      if (header.vectorLength !== expected.vectorLength) {
        throw new CkksError('LENGTH_MISMATCH', `CKKS payload holds ${header.vectorLength} values, the study's model needs ${expected.vectorLength}`);
      }
    }
    if (this.length !== undefined && header.vectorLength !== this.length) {
      throw new CkksError('LENGTH_MISMATCH', `CKKS payload holds ${header.vectorLength} values, this sum holds ${this.length}`);
    }
    const { maxSites } = this.ctx.parameters;
    if (this.summed + header.siteCount > maxSites) {
      throw new CkksError(
        'TOO_MANY_SITES',
        `adding ${header.siteCount} more site(s) to ${this.summed} would exceed the ${maxSites} the CKKS parameters can sum without overflow`,
      );
    }
    // An update's seeds are 64 random bytes each, all different, so its first identifies it; an aggregate is
    // identified by its digest.
    const identity =
      header.kind === 'update' ? hex(new CiphertextReader(this.ctx, payload, header).distinctSeeds()[0]!) : createHash('sha256').update(payload).digest('hex');
    if (this.seen.has(identity)) throw new CkksError('DUPLICATE', 'this CKKS payload has already been added to the sum');
    return { header, identity };
  }

  /** The sums' coefficients, allocated for the first payload (shared memory when threads add into them). */
  protected sums(header: PayloadHeader, allocate: (words: number) => Uint32Array): { sum0: Uint32Array; sum1: Uint32Array } {
    const words = header.ciphertextCount * 2 * this.ctx.valuesPerCiphertext;
    this.sum0 ??= allocate(words);
    this.sum1 ??= allocate(words);
    return { sum0: this.sum0, sum1: this.sum1 };
  }

  /** Part of a payload may be in the sum: refuse to go on rather than return a wrong aggregate. */
  protected fail(error: unknown): void {
    this.failed = error instanceof Error ? error : new Error(String(error));
  }

  protected commit(header: PayloadHeader, identity: string): void {
    this.length = header.vectorLength;
    this.summed += header.siteCount;
    this.seen.add(identity);
  }

  /** The encrypted sum, serialised: c0 in coefficient form and c1 in NTT form, both at q's bit width. */
  result(): Uint8Array {
    if (this.failed !== undefined) throw new CkksError('ACCUMULATOR_FAILED', `this sum is unusable after an earlier failure: ${this.failed.message}`);
    if (this.length === undefined || this.sum0 === undefined || this.sum1 === undefined) {
      throw new CkksError('EMPTY_SUM', 'no CKKS payload has been added: there is no sum yet');
    }
    const n = this.ctx.valuesPerCiphertext;
    const bits = this.ctx.modulus.bits;
    const count = Math.ceil(this.length / n);
    const header: PayloadHeader = {
      kind: 'aggregate',
      c0Bits: bits,
      c1Bits: bits,
      vectorLength: this.length,
      ciphertextCount: count,
      siteCount: this.summed,
      fingerprint: Buffer.from(this.ctx.fingerprint, 'hex'),
      keyId: this.keyId,
    };
    const out = startPayload(header, n);
    const at = packBits(this.sum0, bits, out, PAYLOAD_HEADER_BYTES);
    const end = packBits(this.sum1, bits, out, at);
    if (end !== payloadBytes(header, n) - 4) throw new CkksError('SEAL_ERROR', 'internal error: aggregate size');
    return sealPayload(out);
  }
}

/** The running sum on the calling thread. */
export class CiphertextAccumulator extends EncryptedSum {
  /**
   * Adds a site's update, or a partial aggregate (to resume a sum saved by result()). Throws a CkksError
   * naming what is wrong with a payload; nothing is added then.
   */
  add(payload: Uint8Array, expected?: ExpectedUpdate): void {
    const { header, identity } = this.admit(payload, expected);
    new CiphertextReader(this.ctx, payload, header).validateAll();
    const { sum0, sum1 } = this.sums(header, (words) => new Uint32Array(words));
    try {
      addRange(this.ctx, payload, header, 0, header.ciphertextCount, sum0, sum1);
    } catch (error) {
      this.fail(error);
      throw error;
    }
    this.commit(header, identity);
  }
}
