import { CkksError } from './errors.js';

/**
 * Microsoft SEAL 4.1's uncompressed serialisation of ciphertexts and plaintexts, which we read and write
 * ourselves: it is how coefficients get in and out of SEAL (node-seal exposes no coefficient access), how a
 * seeded ciphertext's c0 and seed are taken apart for the compact wire format, and how we borrow SEAL's
 * NTT (a "ciphertext" of up to 16 polynomials transformed in one call).
 *
 * Layout (little-endian): 16-byte header {magic 0xA15E, header size 16, version major, minor, compression,
 * reserved u16, total size u64}, then for a ciphertext: parms_id (32), is_ntt_form (u8), size, N,
 * coeff modulus count (u64 each), scale (f64), correction factor (u64), then the coefficient array as a
 * nested serialisation {header, count u64, words u64[]}; a seeded ciphertext holds only c0 and is followed by
 * a nested {header, prng type u8, seed u64[8]}. A plaintext is parms_id, coeff count (u64), scale (f64),
 * then the nested coefficient array.
 */

const MAGIC = 0xa15e;
const HEADER = 16;
const CT_META = 32 + 1 + 8 + 8 + 8 + 8 + 8;
const CT_DATA = HEADER + CT_META + HEADER + 8;
const PT_DATA = HEADER + 32 + 8 + 8 + HEADER + 8;
export const SEED_BYTES = 64;
const SEED_INFO = HEADER + 1 + SEED_BYTES;
/** SEAL_CIPHERTEXT_SIZE_MAX: a ciphertext may hold up to 16 polynomials. */
export const MAX_POLYS = 16;

const fail = (what: string): never => {
  throw new CkksError('SEAL_ERROR', `unexpected SEAL serialisation: ${what} (is node-seal 7 / SEAL 4.1 installed?)`);
};

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(v: DataView, at: number): number {
  const value = v.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`field at ${at} is too large`);
  return Number(value);
}

function writeHeader(v: DataView, at: number, total: number, version: Uint8Array): void {
  v.setUint16(at, MAGIC, true);
  v.setUint8(at + 2, HEADER);
  v.setUint8(at + 3, version[0] as number);
  v.setUint8(at + 4, version[1] as number);
  v.setUint8(at + 5, 0); // no compression
  v.setUint16(at + 6, 0, true);
  v.setBigUint64(at + 8, BigInt(total), true);
}

function checkHeader(v: DataView, at: number, total: number): void {
  if (v.getUint16(at, true) !== MAGIC || v.getUint8(at + 2) !== HEADER) fail('bad header');
  if (v.getUint8(at + 5) !== 0) fail('compressed data');
  if (u64(v, at + 8) !== total) fail('size field disagrees with the data');
}

/** What every ciphertext of one context shares, learnt from a ciphertext SEAL made itself. */
export class SealLayout {
  private constructor(
    readonly n: number,
    readonly parmsId: Uint8Array,
    readonly version: Uint8Array,
    readonly prngType: number,
  ) {}

  /** Learns the layout from a seeded, NTT-form, single-prime ciphertext serialised by SEAL. */
  static fromSeededCiphertext(bytes: Uint8Array, n: number): SealLayout {
    const v = view(bytes);
    const layout = new SealLayout(n, bytes.slice(HEADER, HEADER + 32), bytes.slice(3, 5), bytes[bytes.length - SEED_BYTES - 1] ?? 0);
    layout.readSeeded(bytes);
    if (v.getUint8(HEADER + 32) !== 1) fail('CKKS ciphertext not in NTT form');
    return layout;
  }

  /** Bytes of an uncompressed ciphertext with `size` polynomials (all of them, no seed). */
  ciphertextBytes(size: number): number {
    return CT_DATA + size * this.n * 8;
  }

  /**
   * Serialises `size` polynomials (2 words per coefficient, polynomial after polynomial) as a SEAL
   * ciphertext. With a seed, polys holds c0 only and SEAL regenerates c1 from the seed on load.
   */
  writeCiphertext(polys: Uint32Array, size: number, ntt: boolean, scale: number, seed?: Uint8Array): Uint8Array {
    const dataPolys = seed === undefined ? size : 1;
    if (polys.length !== dataPolys * this.n * 2) throw new RangeError(`expected ${dataPolys} polynomials of ${this.n} coefficients`);
    const total = CT_DATA + dataPolys * this.n * 8 + (seed === undefined ? 0 : SEED_INFO);
    const out = new Uint8Array(total);
    const v = view(out);
    writeHeader(v, 0, total, this.version);
    out.set(this.parmsId, HEADER);
    let at = HEADER + 32;
    v.setUint8(at, ntt ? 1 : 0);
    v.setBigUint64(at + 1, BigInt(size), true);
    v.setBigUint64(at + 9, BigInt(this.n), true);
    v.setBigUint64(at + 17, 1n, true);
    v.setFloat64(at + 25, scale, true);
    v.setBigUint64(at + 33, 1n, true);
    at = HEADER + CT_META;
    writeHeader(v, at, HEADER + 8 + polys.byteLength, this.version);
    v.setBigUint64(at + HEADER, BigInt(polys.length / 2), true);
    out.set(new Uint8Array(polys.buffer, polys.byteOffset, polys.byteLength), CT_DATA);
    if (seed !== undefined) {
      at = CT_DATA + polys.byteLength;
      writeHeader(v, at, SEED_INFO, this.version);
      v.setUint8(at + HEADER, this.prngType);
      out.set(seed, at + HEADER + 1);
    }
    return out;
  }

  /** Reads all polynomials of an uncompressed, unseeded SEAL ciphertext with `size` polynomials. */
  readCiphertext(bytes: Uint8Array, size: number): Uint32Array {
    const v = view(bytes);
    const words = size * this.n;
    checkHeader(v, 0, bytes.length);
    if (bytes.length !== CT_DATA + words * 8) fail(`ciphertext of ${bytes.length} bytes, expected ${CT_DATA + words * 8}`);
    this.checkMeta(v, size, words);
    return copyWords(bytes, CT_DATA, words);
  }

  /** Copies polynomial `index` of an uncompressed, unseeded SEAL ciphertext with `size` polynomials into out. */
  readPolyInto(bytes: Uint8Array, size: number, index: number, out: Uint32Array): void {
    const v = view(bytes);
    const words = size * this.n;
    checkHeader(v, 0, bytes.length);
    if (bytes.length !== CT_DATA + words * 8) fail(`ciphertext of ${bytes.length} bytes, expected ${CT_DATA + words * 8}`);
    if (out.length !== 2 * this.n || index < 0 || index >= size) throw new RangeError(`polynomial ${index} of ${size} into ${out.length} words`);
    this.checkMeta(v, size, words);
    const at = CT_DATA + index * this.n * 8;
    new Uint8Array(out.buffer, out.byteOffset, this.n * 8).set(bytes.subarray(at, at + this.n * 8));
  }

  /** Reads c0 and the seed of a seeded SEAL ciphertext. */
  readSeeded(bytes: Uint8Array): { c0: Uint32Array; seed: Uint8Array } {
    const v = view(bytes);
    checkHeader(v, 0, bytes.length);
    if (bytes.length !== CT_DATA + this.n * 8 + SEED_INFO) fail(`seeded ciphertext of ${bytes.length} bytes`);
    this.checkMeta(v, 2, this.n);
    const seedAt = CT_DATA + this.n * 8;
    checkHeader(v, seedAt, SEED_INFO);
    if (v.getUint8(seedAt + HEADER) !== this.prngType) fail('seed made by another PRNG');
    return { c0: copyWords(bytes, CT_DATA, this.n), seed: bytes.slice(seedAt + HEADER + 1, seedAt + SEED_INFO) };
  }

  /** Reads the coefficients of an uncompressed SEAL plaintext in NTT form (N words for a single prime). */
  readPlaintext(bytes: Uint8Array): Uint32Array {
    const v = view(bytes);
    checkHeader(v, 0, bytes.length);
    if (bytes.length !== PT_DATA + this.n * 8) fail(`plaintext of ${bytes.length} bytes`);
    if (u64(v, HEADER + 32) !== this.n || u64(v, PT_DATA - 8) !== this.n) fail('plaintext size');
    return copyWords(bytes, PT_DATA, this.n);
  }

  private checkMeta(v: DataView, size: number, dataWords: number): void {
    const at = HEADER + 32;
    if (u64(v, at + 1) !== size || u64(v, at + 9) !== this.n || u64(v, at + 17) !== 1) fail('ciphertext shape');
    checkHeader(v, HEADER + CT_META, HEADER + 8 + dataWords * 8);
    if (u64(v, CT_DATA - 8) !== dataWords) fail('coefficient count');
  }
}

/** Copies `words` 64-bit words from bytes[at...] into a fresh, aligned Uint32Array. */
function copyWords(bytes: Uint8Array, at: number, words: number): Uint32Array {
  const out = new Uint32Array(words * 2);
  new Uint8Array(out.buffer).set(bytes.subarray(at, at + words * 8));
  return out;
}
