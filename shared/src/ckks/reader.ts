import type { CkksContext } from './context.js';
import { CkksError } from './errors.js';
import { PAYLOAD_HEADER_BYTES, type PayloadHeader } from './payload.js';
import { allAtMost, packedBytes, unpackBits } from './polyq.js';
import { SEED_BYTES } from './seal-format.js';

/**
 * Reads the ciphertexts of a checked payload back into SEAL's serialisation, refusing coefficients that a
 * well-formed payload cannot contain (c0 above the compressed range, residues at or above q). Reads into the
 * caller's buffers where it can: a sum reads every coefficient of every site's update.
 */
export class CiphertextReader {
  private readonly n: number;
  private readonly c0Bytes: number;
  private readonly c1Bytes: number;
  private readonly c0At: number;
  private readonly c1At: number;

  constructor(
    private readonly ctx: CkksContext,
    private readonly payload: Uint8Array,
    private readonly header: PayloadHeader,
  ) {
    this.n = ctx.valuesPerCiphertext;
    this.c0Bytes = packedBytes(this.n, header.c0Bits);
    this.c1Bytes = header.kind === 'aggregate' ? packedBytes(this.n, header.c1Bits) : 0;
    this.c0At = PAYLOAD_HEADER_BYTES + (header.kind === 'update' ? header.ciphertextCount * SEED_BYTES : 0);
    this.c1At = this.c0At + header.ciphertextCount * this.c0Bytes;
  }

  /** Checks every coefficient's range of ciphertexts first..first+count-1 (before any of them is added to a sum). */
  checkRange(first: number, count: number): void {
    const scratch = new Uint32Array(2 * this.n);
    for (let i = first; i < first + count; i++) {
      this.rawC0(i, scratch);
      if (this.header.kind === 'aggregate') this.c1(i, scratch);
    }
  }

  validateAll(): void {
    this.checkRange(0, this.header.ciphertextCount);
  }

  /** c0 of ciphertext i in coefficient form, as residues modulo q. */
  c0(i: number, out = new Uint32Array(2 * this.n)): Uint32Array {
    this.rawC0(i, out);
    if (this.header.kind === 'update') this.ctx.modulus.decompress(out, this.ctx.parameters.droppedBits);
    return out;
  }

  /** c1 of ciphertext i of an aggregate, in NTT form. */
  c1(i: number, out = new Uint32Array(2 * this.n)): Uint32Array {
    unpackBits(this.payload, this.c1At + i * this.c1Bytes, this.header.c1Bits, out);
    if (!this.ctx.modulus.allReduced(out)) throw new CkksError('CORRUPT', `CKKS payload is corrupt: ciphertext ${i} has c1 coefficients out of range`);
    return out;
  }

  /** 64-byte SEAL seed of ciphertext i of an update. */
  seed(i: number): Uint8Array {
    return this.payload.subarray(PAYLOAD_HEADER_BYTES + i * SEED_BYTES, PAYLOAD_HEADER_BYTES + (i + 1) * SEED_BYTES);
  }

  /**
   * Every seed of an update, in ciphertext order, refused (SEED_REUSED) when two of its ciphertexts share one: with
   * c1 = a(seed) equal, c0 - c0' is the difference of their plaintexts plus small noise, readable without the key.
   */
  distinctSeeds(): Uint8Array[] {
    const seeds: Uint8Array[] = [];
    const firstUse = new Map<string, number>();
    for (let i = 0; i < this.header.ciphertextCount; i++) {
      const seed = this.seed(i);
      const key = Buffer.from(seed.buffer, seed.byteOffset, seed.byteLength).toString('latin1');
      const earlier = firstUse.get(key);
      if (earlier !== undefined) {
        throw new CkksError('SEED_REUSED', `ciphertext ${i} reuses the seed of ciphertext ${earlier} of the same update; a seed must never encrypt twice`);
      }
      firstUse.set(key, i);
      seeds.push(seed);
    }
    return seeds;
  }

  /**
   * Ciphertext i as SEAL bytes, given its c0 in NTT form: seeded for an update (SEAL regenerates c1 on
   * load), both polynomials for an aggregate.
   */
  sealCiphertext(i: number, c0Ntt: Uint32Array): Uint8Array {
    const { scale } = this.ctx.internals;
    if (this.header.kind === 'update') return this.ctx.layout.writeCiphertext(c0Ntt, 2, true, scale, this.seed(i));
    const both = new Uint32Array(4 * this.n);
    both.set(c0Ntt, 0);
    both.set(this.c1(i), 2 * this.n);
    return this.ctx.layout.writeCiphertext(both, 2, true, scale);
  }

  /** c0 as packed (an update's without its dropped low bits), range-checked. */
  private rawC0(i: number, out: Uint32Array): void {
    unpackBits(this.payload, this.c0At + i * this.c0Bytes, this.header.c0Bits, out);
    const ok = this.header.kind === 'update' ? allAtMost(out, this.ctx.internals.compressedMax) : this.ctx.modulus.allReduced(out);
    if (!ok) throw new CkksError('CORRUPT', `CKKS payload is corrupt: ciphertext ${i} has c0 coefficients out of range`);
  }
}
