/**
 * Polynomial coefficients modulo a prime q < 2^60 held as little-endian 64-bit words in a Uint32Array
 * ([lo0, hi0, lo1, hi1, ...]), the same bytes SEAL serialises. Values above 2^53 are not exact in a
 * JavaScript number, so everything here works on the two 32-bit halves.
 */

const TWO_32 = 0x1_0000_0000;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  // SEAL's serialisation is little-endian and we alias it with Uint32Array.
  throw new Error('the CKKS codec needs a little-endian host');
}

export class Modulus {
  readonly lo: number;
  readonly hi: number;
  /** Bits needed for any residue (q's bit length). */
  readonly bits: number;
  /** (q - 1) / 2 as halves: residues above it stand for negative numbers. */
  private readonly halfLo: number;
  private readonly halfHi: number;

  constructor(readonly value: bigint) {
    if (value < 3n || value >= 1n << 60n || value % 2n === 0n) throw new RangeError(`modulus must be an odd number in [3, 2^60), got ${value}`);
    this.lo = Number(value & 0xffff_ffffn);
    this.hi = Number(value >> 32n);
    this.bits = value.toString(2).length;
    const half = (value - 1n) / 2n;
    this.halfLo = Number(half & 0xffff_ffffn);
    this.halfHi = Number(half >> 32n);
  }

  /** q as a float64 (rounded): for bounds, never for arithmetic. */
  get approx(): number {
    return Number(this.value);
  }

  /**
   * Writes round(v * 2^scaleBits) mod q for each value into out[2*start...]. Callers have checked that
   * |v| * 2^scaleBits < 2^52, so the rounded integer is exact.
   */
  encodeScaled(values: ArrayLike<number>, from: number, count: number, scale: number, out: Uint32Array): void {
    for (let i = 0; i < count; i++) {
      const m = Math.round((values[from + i] as number) * scale);
      const a = Math.abs(m);
      const aHi = Math.floor(a / TWO_32);
      const aLo = a - aHi * TWO_32;
      if (m >= 0) {
        out[2 * i] = aLo;
        out[2 * i + 1] = aHi;
      } else {
        // q - |m|
        let lo = this.lo - aLo;
        let hi = this.hi - aHi;
        if (lo < 0) {
          lo += TWO_32;
          hi -= 1;
        }
        out[2 * i] = lo;
        out[2 * i + 1] = hi;
      }
    }
  }

  /** out[i] = residue i read as a centered integer in (-q/2, q/2], divided by scale. Exact for q < 2^54. */
  decodeCentered(coeffs: Uint32Array, count: number, scale: number, out: Float64Array, outOffset: number): void {
    for (let i = 0; i < count; i++) {
      const lo = coeffs[2 * i] as number;
      const hi = coeffs[2 * i + 1] as number;
      if (hi > this.halfHi || (hi === this.halfHi && lo > this.halfLo)) {
        let nLo = this.lo - lo;
        let nHi = this.hi - hi;
        if (nLo < 0) {
          nLo += TWO_32;
          nHi -= 1;
        }
        out[outOffset + i] = -(nHi * TWO_32 + nLo) / scale;
      } else {
        out[outOffset + i] = (hi * TWO_32 + lo) / scale;
      }
    }
  }

  /** acc = (acc + x) mod q, coefficient-wise; both already reduced. */
  addInto(acc: Uint32Array, x: Uint32Array): void {
    const qLo = this.lo;
    const qHi = this.hi;
    for (let i = 0; i < acc.length; i += 2) {
      let lo = (acc[i] as number) + (x[i] as number);
      let hi = (acc[i + 1] as number) + (x[i + 1] as number);
      if (lo >= TWO_32) {
        lo -= TWO_32;
        hi += 1;
      }
      if (hi > qHi || (hi === qHi && lo >= qLo)) {
        lo -= qLo;
        hi -= qHi;
        if (lo < 0) {
          lo += TWO_32;
          hi -= 1;
        }
      }
      acc[i] = lo;
      acc[i + 1] = hi;
    }
  }

  /** True when every residue is below q (data from outside must be checked before SEAL sees it). */
  allReduced(x: Uint32Array): boolean {
    const qLo = this.lo;
    const qHi = this.hi;
    for (let i = 0; i < x.length; i += 2) {
      const hi = x[i + 1] as number;
      if (hi > qHi || (hi === qHi && (x[i] as number) >= qLo)) return false;
    }
    return true;
  }

  /**
   * Largest value compress() can return for `dropped` bits: round((q - 1) / 2^dropped). Kyber-style
   * compression of c0 only: c1 is rebuilt exactly from its seed, so the rounding adds at most
   * 2^(dropped-1) to the decrypted value and is never multiplied by the secret key.
   */
  compressedMax(dropped: number): bigint {
    if (dropped === 0) return this.value - 1n;
    return (this.value - 1n + (1n << BigInt(dropped - 1))) >> BigInt(dropped);
  }

  /** x -> round(x / 2^dropped), in place (dropped in [0, 24]). */
  compress(x: Uint32Array, dropped: number): void {
    if (dropped === 0) return;
    const half = 2 ** (dropped - 1);
    for (let i = 0; i < x.length; i += 2) {
      let lo = (x[i] as number) + half;
      let hi = x[i + 1] as number;
      if (lo >= TWO_32) {
        lo -= TWO_32;
        hi += 1;
      }
      x[i] = ((lo >>> dropped) | (hi << (32 - dropped))) >>> 0;
      x[i + 1] = hi >>> dropped;
    }
  }

  /** y -> y * 2^dropped mod q, in place. Callers have checked y <= compressedMax(dropped). */
  decompress(x: Uint32Array, dropped: number): void {
    if (dropped === 0) return;
    const qLo = this.lo;
    const qHi = this.hi;
    for (let i = 0; i < x.length; i += 2) {
      const yLo = x[i] as number;
      const yHi = x[i + 1] as number;
      let lo = (yLo << dropped) >>> 0;
      let hi = ((yHi << dropped) | (yLo >>> (32 - dropped))) >>> 0;
      // y * 2^dropped < q + 2^(dropped-1) < 2q, so one subtraction reduces it.
      if (hi > qHi || (hi === qHi && lo >= qLo)) {
        lo -= qLo;
        hi -= qHi;
        if (lo < 0) {
          lo += TWO_32;
          hi -= 1;
        }
      }
      x[i] = lo;
      x[i + 1] = hi;
    }
  }
}

/** True when every 64-bit word of x is at most max (max < 2^64). */
export function allAtMost(x: Uint32Array, max: bigint): boolean {
  const mLo = Number(max & 0xffff_ffffn);
  const mHi = Number(max >> 32n);
  for (let i = 0; i < x.length; i += 2) {
    const hi = x[i + 1] as number;
    if (hi > mHi || (hi === mHi && (x[i] as number) > mLo)) return false;
  }
  return true;
}

/** Bytes taken by `count` words packed at `bits` bits each. */
export function packedBytes(count: number, bits: number): number {
  return Math.ceil((count * bits) / 8);
}

/**
 * Packs 64-bit words (each below 2^bits, bits <= 60) into out at byte offset `at`, least significant bit
 * first, and returns the offset after the last byte written. The target bytes must be zero (payloads are
 * freshly allocated): widths of 33 to 56 bits, the ones we use, are OR-ed in with a fixed number of byte
 * operations per word because this loop moves every coefficient of every ciphertext.
 */
export function packBits(words: Uint32Array, bits: number, out: Uint8Array, at: number): number {
  if (bits >= 33 && bits <= 56) return packWide(words, bits, out, at);
  return packAny(words, bits, out, at);
}

function packWide(words: Uint32Array, bits: number, out: Uint8Array, at: number): number {
  const count = words.length / 2;
  for (let k = 0; k < count; k++) {
    const lo = words[2 * k] as number;
    const hi = words[2 * k + 1] as number;
    const bit = k * bits;
    const b = at + (bit >>> 3);
    const s = bit & 7;
    // lo << s spans 4 bytes plus s bits carried into the hi part; bits + s <= 63 fits 8 bytes.
    const w0 = (lo << s) >>> 0;
    const w1 = s === 0 ? hi : ((hi << s) | (lo >>> (32 - s))) >>> 0;
    out[b] = (out[b] as number) | (w0 & 0xff);
    out[b + 1] = w0 >>> 8;
    out[b + 2] = w0 >>> 16;
    out[b + 3] = w0 >>> 24;
    // Only the bytes this word reaches: the next word ORs into the last one.
    const last = (s + bits - 1) >>> 3;
    out[b + 4] = w1;
    if (last >= 5) out[b + 5] = w1 >>> 8;
    if (last >= 6) out[b + 6] = w1 >>> 16;
    if (last >= 7) out[b + 7] = w1 >>> 24;
  }
  return at + packedBytes(count, bits);
}

/** Any width up to 60 bits, in pieces of at most 24 bits so the bit accumulator stays within 32 bits. */
function packAny(words: Uint32Array, bits: number, out: Uint8Array, at: number): number {
  const n1 = Math.min(bits, 24);
  const n2 = Math.min(Math.max(bits - 24, 0), 24);
  const n3 = Math.max(bits - 48, 0);
  const m1 = 2 ** n1 - 1;
  const m2 = 2 ** n2 - 1;
  const m3 = 2 ** n3 - 1;
  let acc = 0;
  let filled = 0;
  let pos = at;
  for (let i = 0; i < words.length; i += 2) {
    const lo = words[i] as number;
    const hi = words[i + 1] as number;
    acc = (acc | ((lo & m1) << filled)) >>> 0;
    filled += n1;
    while (filled >= 8) {
      out[pos++] = acc & 0xff;
      acc >>>= 8;
      filled -= 8;
    }
    if (n2 > 0) {
      acc = (acc | ((((lo >>> 24) | (hi << 8)) & m2) << filled)) >>> 0;
      filled += n2;
      while (filled >= 8) {
        out[pos++] = acc & 0xff;
        acc >>>= 8;
        filled -= 8;
      }
    }
    if (n3 > 0) {
      acc = (acc | (((hi >>> 16) & m3) << filled)) >>> 0;
      filled += n3;
      while (filled >= 8) {
        out[pos++] = acc & 0xff;
        acc >>>= 8;
        filled -= 8;
      }
    }
  }
  if (filled > 0) out[pos++] = acc & 0xff;
  return pos;
}

/** Inverse of packBits: reads words.length / 2 words of `bits` bits from input at byte offset `at`. */
export function unpackBits(input: Uint8Array, at: number, bits: number, words: Uint32Array): number {
  if (bits >= 33 && bits <= 56) return unpackWide(input, at, bits, words);
  return unpackAny(input, at, bits, words);
}

function unpackWide(input: Uint8Array, at: number, bits: number, words: Uint32Array): number {
  const count = words.length / 2;
  const end = at + packedBytes(count, bits);
  const hiMask = 2 ** (bits - 32) - 1;
  // Reads past `end` (or the array) must see zeros, not the next field's bits.
  const byte = (i: number): number => (i < end ? (input[i] as number) : 0);
  for (let k = 0; k < count; k++) {
    const bit = k * bits;
    const b = at + (bit >>> 3);
    const s = bit & 7;
    const w0 = ((input[b] as number) | ((input[b + 1] as number) << 8) | ((input[b + 2] as number) << 16) | ((input[b + 3] as number) << 24)) >>> 0;
    const w1 =
      b + 8 <= end
        ? ((input[b + 4] as number) | ((input[b + 5] as number) << 8) | ((input[b + 6] as number) << 16) | ((input[b + 7] as number) << 24)) >>> 0
        : (byte(b + 4) | (byte(b + 5) << 8) | (byte(b + 6) << 16) | (byte(b + 7) << 24)) >>> 0;
    words[2 * k] = s === 0 ? w0 : ((w0 >>> s) | (w1 << (32 - s))) >>> 0;
    words[2 * k + 1] = (w1 >>> s) & hiMask;
  }
  return end;
}

function unpackAny(input: Uint8Array, at: number, bits: number, words: Uint32Array): number {
  const n1 = Math.min(bits, 24);
  const n2 = Math.min(Math.max(bits - 24, 0), 24);
  const n3 = Math.max(bits - 48, 0);
  const m1 = 2 ** n1 - 1;
  const m2 = 2 ** n2 - 1;
  const m3 = 2 ** n3 - 1;
  let acc = 0;
  let filled = 0;
  let pos = at;
  for (let i = 0; i < words.length; i += 2) {
    while (filled < n1) {
      acc = (acc | ((input[pos++] as number) << filled)) >>> 0;
      filled += 8;
    }
    const p1 = acc & m1;
    acc >>>= n1;
    filled -= n1;
    let p2 = 0;
    if (n2 > 0) {
      while (filled < n2) {
        acc = (acc | ((input[pos++] as number) << filled)) >>> 0;
        filled += 8;
      }
      p2 = acc & m2;
      acc >>>= n2;
      filled -= n2;
    }
    let p3 = 0;
    if (n3 > 0) {
      while (filled < n3) {
        acc = (acc | ((input[pos++] as number) << filled)) >>> 0;
        filled += 8;
      }
      p3 = acc & m3;
      acc >>>= n3;
      filled -= n3;
    }
    words[i] = (p1 | (p2 << 24)) >>> 0;
    words[i + 1] = ((p2 >>> 8) | (p3 << 16)) >>> 0;
  }
  return pos;
}
