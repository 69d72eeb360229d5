/**
 * Arithmetic in R_q = Z_q[X]/(X^n + 1) with q a product of word-sized NTT primes, held in RNS form: one residue
 * polynomial per prime. Every hot loop works on JavaScript numbers only (no BigInt).
 *
 * Modular multiplication of a, b < p < 2^30: the quotient floor(a*b/p) is estimated in float64 (off by at most
 * one, since a*b/p < 2^30 and the float error is ~2^-22), and the remainder a*b - qe*p is then computed exactly
 * in 32-bit wrap-around arithmetic with Math.imul: it lies in [-p, 2p), which fits an int32, so the low 32 bits
 * are the whole value. One conditional correction finishes it.
 */

import { createHash, type Hash } from 'node:crypto';

const TWO_30 = 0x4000_0000;
const TWO_32 = 0x1_0000_0000;
const TWO_53 = 2 ** 53;

/**
 * Maps r in [-p, 2p) to [0, p) without branches: residues are uniformly random, so conditional corrections
 * mispredict about half the time, which measured 3x slower in the NTT.
 */
function fold(r: number, p: number): number {
  let v = r + ((r >> 31) & p) - p;
  v += (v >> 31) & p;
  return v;
}

/** a*b mod p for a, b in [0, p), p < 2^30. */
function mulMod(a: number, b: number, p: number): number {
  const qe = (a * b / p) | 0;
  return fold((Math.imul(a, b) - Math.imul(qe, p)) | 0, p);
}

function powMod(base: number, exp: number, p: number): number {
  let result = 1;
  let b = base % p;
  let e = exp;
  while (e > 0) {
    if (e % 2 === 1) result = mulMod(result, b, p);
    b = mulMod(b, b, p);
    e = Math.floor(e / 2);
  }
  return result;
}

function powModBig(base: bigint, exp: bigint, m: bigint): bigint {
  let result = 1n;
  let b = base % m;
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

const SMALL_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] as const;

/** Deterministic Miller-Rabin: the first 12 primes as bases are exact for every m < 3.3e24, so for any double. */
function isPrime(m: number): boolean {
  if (!Number.isSafeInteger(m) || m < 2) return false;
  for (const s of SMALL_PRIMES) {
    if (m === s) return true;
    if (m % s === 0) return false;
  }
  const big = BigInt(m);
  let d = big - 1n;
  let r = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    r++;
  }
  outer: for (const s of SMALL_PRIMES) {
    let x = powModBig(BigInt(s), d, big);
    if (x === 1n || x === big - 1n) continue;
    for (let i = 1; i < r; i++) {
      x = (x * x) % big;
      if (x === big - 1n) continue outer;
    }
    return false;
  }
  return true;
}

function invMod(a: number, p: number): number {
  return powMod(a, p - 2, p);
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= TWO_30;
}

function bitReverse(x: number, bits: number): number {
  let r = 0;
  for (let i = 0; i < bits; i++) r = (r << 1) | ((x >>> i) & 1);
  return r;
}

/** The `count` largest primes p < 2^bits with p ≡ 1 (mod 2n), in descending order; deterministic. */
export function nttPrimes(n: number, bits: number, count: number): number[] {
  if (!isPowerOfTwo(n)) throw new RangeError(`n must be a power of two, got ${n}`);
  // Above 2^52 a prime would not be an exact JavaScript number (and the ring only takes primes below 2^30).
  if (!Number.isInteger(bits) || bits < 2 || bits > 52) throw new RangeError(`bits must be an integer in [2, 52], got ${bits}`);
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
  const step = 2 * n;
  const out: number[] = [];
  // Largest c = 1 + m*step below 2^bits.
  let c = Math.floor((2 ** bits - 2) / step) * step + 1;
  while (out.length < count && c > step) {
    if (isPrime(c)) out.push(c);
    c -= step;
  }
  if (out.length < count) throw new RangeError(`only ${out.length} primes p ≡ 1 mod ${step} below 2^${bits}, wanted ${count}`);
  return out;
}

/** Per-prime NTT tables. Each twiddle w comes with w/p in float64 for the quotient estimate. */
interface PrimeTables {
  readonly p: number;
  /** psi^bitrev(i): the forward Cooley-Tukey twiddles. */
  readonly fwd: Uint32Array;
  readonly fwdQ: Float64Array;
  /** psi^-bitrev(i): the inverse Gentleman-Sande twiddles. */
  readonly inv: Uint32Array;
  readonly invQ: Float64Array;
  readonly nInv: number;
  readonly nInvQ: number;
}

/** A primitive 2n-th root of unity mod p: psi^n = -1 suffices since 2n is a power of two. */
function findPsi(p: number, n: number): number {
  const e = (p - 1) / (2 * n);
  for (let x = 2; x < p; x++) {
    const g = powMod(x, e, p);
    if (powMod(g, n, p) === p - 1) return g;
  }
  throw new RangeError(`no primitive ${2 * n}-th root of unity mod ${p}`);
}

function buildTables(p: number, n: number): PrimeTables {
  const logN = Math.log2(n);
  const psi = findPsi(p, n);
  const psiInv = invMod(psi, p);
  const fwd = new Uint32Array(n);
  const inv = new Uint32Array(n);
  const fwdQ = new Float64Array(n);
  const invQ = new Float64Array(n);
  let pw = 1;
  let pwInv = 1;
  for (let i = 0; i < n; i++) {
    const r = bitReverse(i, logN);
    fwd[r] = pw;
    inv[r] = pwInv;
    pw = mulMod(pw, psi, p);
    pwInv = mulMod(pwInv, psiInv, p);
  }
  for (let i = 0; i < n; i++) {
    fwdQ[i] = (fwd[i] as number) / p;
    invQ[i] = (inv[i] as number) / p;
  }
  const nInv = invMod(n % p, p);
  return { p, fwd, fwdQ, inv, invQ, nInv, nInvQ: nInv / p };
}

export class RnsRing {
  readonly n: number;
  readonly primes: readonly number[];
  readonly modulus: bigint;
  private readonly tables: readonly PrimeTables[];
  private readonly bigPrimes: readonly bigint[];
  /** Mixed-radix (Garner) constants: garnerInv[i][j] = p_j^-1 mod p_i for j < i. */
  private readonly garnerInv: readonly Float64Array[];
  /** prefix[i] = p_0 * ... * p_{i-1}, the weight of mixed-radix digit i. */
  private readonly prefix: readonly bigint[];
  /** Mixed-radix digits of floor(q/2): residues above it stand for negative numbers. */
  private readonly halfDigits: Float64Array;
  private readonly halfQ: bigint;

  private constructor(n: number, primes: readonly number[]) {
    this.n = n;
    this.primes = Object.freeze([...primes]);
    this.bigPrimes = primes.map(BigInt);
    this.modulus = this.bigPrimes.reduce((acc, p) => acc * p, 1n);
    this.halfQ = this.modulus / 2n;
    this.tables = primes.map((p) => buildTables(p, n));
    const k = primes.length;
    const prefix: bigint[] = [];
    let acc = 1n;
    for (let i = 0; i < k; i++) {
      prefix.push(acc);
      acc *= this.bigPrimes[i] as bigint;
    }
    this.prefix = prefix;
    this.garnerInv = primes.map((pi, i) => {
      const row = new Float64Array(i);
      for (let j = 0; j < i; j++) row[j] = invMod((primes[j] as number) % pi, pi);
      return row;
    });
    this.halfDigits = new Float64Array(k);
    let rest = this.halfQ;
    for (let i = 0; i < k; i++) {
      const p = this.bigPrimes[i] as bigint;
      this.halfDigits[i] = Number(rest % p);
      rest /= p;
    }
  }

  /** n a power of two (>= 16); primes: distinct primes p < 2^30 with p ≡ 1 (mod 2n). Throws RangeError otherwise. */
  static create(n: number, primes: readonly number[]): RnsRing {
    if (!isPowerOfTwo(n) || n < 16) throw new RangeError(`n must be a power of two >= 16, got ${n}`);
    if (primes.length === 0) throw new RangeError('at least one prime is needed');
    const seen = new Set<number>();
    for (const p of primes) {
      if (!Number.isSafeInteger(p) || p < 3 || p >= TWO_30) throw new RangeError(`prime ${p} is not an integer in [3, 2^30)`);
      if (p % (2 * n) !== 1) throw new RangeError(`prime ${p} is not 1 mod ${2 * n}`);
      if (!isPrime(p)) throw new RangeError(`${p} is not prime`);
      if (seen.has(p)) throw new RangeError(`prime ${p} is repeated`);
      seen.add(p);
    }
    if (n * primes.length > 2 ** 31) throw new RangeError('polynomial too large');
    return new RnsRing(n, primes);
  }

  /** Words in one polynomial: n residues per prime. */
  get size(): number {
    return this.n * this.primes.length;
  }

  private check(a: Uint32Array, name: string): void {
    if (a.length !== this.size) throw new RangeError(`${name} has ${a.length} words, expected ${this.size}`);
  }

  private output(out: Uint32Array | undefined): Uint32Array {
    if (out === undefined) return new Uint32Array(this.size);
    this.check(out, 'out');
    return out;
  }

  zero(): Uint32Array {
    return new Uint32Array(this.size);
  }

  /** Coefficient form from signed integers (|v| < 2^53, exact integers in a Float64Array or Int32Array). */
  fromSigned(values: ArrayLike<number>): Uint32Array {
    const n = this.n;
    if (values.length !== n) throw new RangeError(`expected ${n} values, got ${values.length}`);
    for (let i = 0; i < n; i++) {
      const v = values[i] as number;
      if (!Number.isSafeInteger(v)) throw new RangeError(`value ${v} at ${i} is not an integer with |v| < 2^53`);
    }
    const out = new Uint32Array(this.size);
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.primes[j] as number;
      const off = j * n;
      // Float % is exact on integers, so no precision is lost even near 2^53.
      for (let i = 0; i < n; i++) {
        const r = (values[i] as number) % p;
        out[off + i] = r < 0 ? r + p : r;
      }
    }
    return out;
  }

  fromBigInts(values: readonly bigint[]): Uint32Array {
    const n = this.n;
    if (values.length !== n) throw new RangeError(`expected ${n} values, got ${values.length}`);
    const out = new Uint32Array(this.size);
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.bigPrimes[j] as bigint;
      const off = j * n;
      for (let i = 0; i < n; i++) {
        const r = (values[i] as bigint) % p;
        out[off + i] = Number(r < 0n ? r + p : r);
      }
    }
    return out;
  }

  /** Mixed-radix digits of coefficient i (value in [0, q)) into `digits`: x = sum digits[t] * prefix[t]. */
  private garner(poly: Uint32Array, i: number, digits: Float64Array): void {
    const n = this.n;
    const k = this.primes.length;
    digits[0] = poly[i] as number;
    for (let t = 1; t < k; t++) {
      const p = this.primes[t] as number;
      const row = this.garnerInv[t] as Float64Array;
      let x = poly[t * n + i] as number;
      for (let s = 0; s < t; s++) {
        let d = x - ((digits[s] as number) % p);
        if (d < 0) d += p;
        x = mulMod(d, row[s] as number, p);
      }
      digits[t] = x;
    }
  }

  /** Whether the digits stand for a value above floor(q/2), compared most significant digit first. */
  private aboveHalf(digits: Float64Array): boolean {
    const half = this.halfDigits;
    for (let t = digits.length - 1; t >= 0; t--) {
      const d = digits[t] as number;
      const h = half[t] as number;
      if (d !== h) return d > h;
    }
    return false;
  }

  /** CRT reconstruction, centred in (-q/2, q/2]. */
  toCenteredBigInts(poly: Uint32Array): bigint[] {
    this.check(poly, 'poly');
    const k = this.primes.length;
    const digits = new Float64Array(k);
    const out = new Array<bigint>(this.n);
    for (let i = 0; i < this.n; i++) {
      this.garner(poly, i, digits);
      let x = 0n;
      for (let t = 0; t < k; t++) x += BigInt(digits[t] as number) * (this.prefix[t] as bigint);
      out[i] = x > this.halfQ ? x - this.modulus : x;
    }
    return out;
  }

  /**
   * The same as float64: exact when |v| < 2^53 (every Horner partial sum is then an integer below 2^53),
   * otherwise rounded with relative error at most about (2k - 1) * 2^-53 for k primes.
   */
  toCenteredNumbers(poly: Uint32Array): Float64Array {
    this.check(poly, 'poly');
    const k = this.primes.length;
    const primes = this.primes;
    const digits = new Float64Array(k);
    const out = new Float64Array(this.n);
    for (let i = 0; i < this.n; i++) {
      this.garner(poly, i, digits);
      if (this.aboveHalf(digits)) {
        // q - x = 1 + (q - 1 - x), and q - 1 has digits p_t - 1, so q - 1 - x has digits p_t - 1 - d_t with no borrows.
        let acc = (primes[k - 1] as number) - 1 - (digits[k - 1] as number);
        for (let t = k - 2; t >= 0; t--) acc = acc * (primes[t] as number) + ((primes[t] as number) - 1 - (digits[t] as number));
        out[i] = -(acc + 1);
      } else {
        let acc = digits[k - 1] as number;
        for (let t = k - 2; t >= 0; t--) acc = acc * (primes[t] as number) + (digits[t] as number);
        out[i] = acc;
      }
    }
    return out;
  }

  add(a: Uint32Array, b: Uint32Array, out?: Uint32Array): Uint32Array {
    this.check(a, 'a');
    this.check(b, 'b');
    const r = this.output(out);
    const n = this.n;
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.primes[j] as number;
      const end = (j + 1) * n;
      for (let i = j * n; i < end; i++) {
        const s = (a[i] as number) + (b[i] as number) - p;
        r[i] = s + ((s >> 31) & p);
      }
    }
    return r;
  }

  sub(a: Uint32Array, b: Uint32Array, out?: Uint32Array): Uint32Array {
    this.check(a, 'a');
    this.check(b, 'b');
    const r = this.output(out);
    const n = this.n;
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.primes[j] as number;
      const end = (j + 1) * n;
      for (let i = j * n; i < end; i++) {
        const d = (a[i] as number) - (b[i] as number);
        r[i] = d + ((d >> 31) & p);
      }
    }
    return r;
  }

  neg(a: Uint32Array, out?: Uint32Array): Uint32Array {
    this.check(a, 'a');
    const r = this.output(out);
    const n = this.n;
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.primes[j] as number;
      const end = (j + 1) * n;
      for (let i = j * n; i < end; i++) {
        const x = a[i] as number;
        r[i] = x === 0 ? 0 : p - x;
      }
    }
    return r;
  }

  /** In place: coefficient form -> NTT (evaluation) form, negacyclic (X^n = -1), per prime. */
  ntt(poly: Uint32Array): Uint32Array {
    this.check(poly, 'poly');
    const n = this.n;
    for (let j = 0; j < this.tables.length; j++) {
      const { p, fwd, fwdQ } = this.tables[j] as PrimeTables;
      const off = j * n;
      // Cooley-Tukey, bit-reversed twiddles, natural-order input, bit-reversed output.
      for (let m = 1, t = n >>> 1; m < n; m <<= 1, t >>>= 1) {
        for (let i = 0; i < m; i++) {
          const w = fwd[m + i] as number;
          const wq = fwdQ[m + i] as number;
          const j1 = off + 2 * i * t;
          const j2 = j1 + t;
          for (let x = j1; x < j2; x++) {
            const y = x + t;
            const b = poly[y] as number;
            let v = (Math.imul(b, w) - Math.imul((b * wq) | 0, p)) | 0;
            v = fold(v, p);
            const u = poly[x] as number;
            const s = u + v - p;
            const d = u - v;
            poly[x] = s + ((s >> 31) & p);
            poly[y] = d + ((d >> 31) & p);
          }
        }
      }
    }
    return poly;
  }

  /** In place inverse. */
  intt(poly: Uint32Array): Uint32Array {
    this.check(poly, 'poly');
    const n = this.n;
    for (let j = 0; j < this.tables.length; j++) {
      const { p, inv, invQ, nInv, nInvQ } = this.tables[j] as PrimeTables;
      const off = j * n;
      // Gentleman-Sande: bit-reversed input, natural-order output.
      for (let m = n, t = 1; m > 1; m >>>= 1, t <<= 1) {
        const h = m >>> 1;
        for (let i = 0; i < h; i++) {
          const w = inv[h + i] as number;
          const wq = invQ[h + i] as number;
          const j1 = off + 2 * i * t;
          const j2 = j1 + t;
          for (let x = j1; x < j2; x++) {
            const y = x + t;
            const u = poly[x] as number;
            const v = poly[y] as number;
            const s = u + v - p;
            let d = u - v;
            d += (d >> 31) & p;
            poly[x] = s + ((s >> 31) & p);
            poly[y] = fold((Math.imul(d, w) - Math.imul((d * wq) | 0, p)) | 0, p);
          }
        }
      }
      const end = off + n;
      for (let x = off; x < end; x++) {
        const v = poly[x] as number;
        poly[x] = fold((Math.imul(v, nInv) - Math.imul((v * nInvQ) | 0, p)) | 0, p);
      }
    }
    return poly;
  }

  /** Pointwise product of two NTT-form polynomials. */
  mulNtt(a: Uint32Array, b: Uint32Array, out?: Uint32Array): Uint32Array {
    this.check(a, 'a');
    this.check(b, 'b');
    const r = this.output(out);
    const n = this.n;
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.primes[j] as number;
      const pInv = 1 / p;
      const end = (j + 1) * n;
      for (let i = j * n; i < end; i++) {
        const x = a[i] as number;
        const y = b[i] as number;
        r[i] = fold((Math.imul(x, y) - Math.imul((x * y * pInv) | 0, p)) | 0, p);
      }
    }
    return r;
  }

  /** Convenience: product of two coefficient-form polynomials, coefficient form out (copies, does not modify inputs). */
  multiply(a: Uint32Array, b: Uint32Array): Uint32Array {
    this.check(a, 'a');
    this.check(b, 'b');
    const fa = this.ntt(a.slice());
    const fb = this.ntt(b.slice());
    return this.intt(this.mulNtt(fa, fb, fa));
  }

  /** Multiply every coefficient by a small signed integer scalar (|k| < 2^22). */
  mulScalar(a: Uint32Array, k: number, out?: Uint32Array): Uint32Array {
    this.check(a, 'a');
    if (!Number.isInteger(k) || Math.abs(k) >= 2 ** 22) throw new RangeError(`scalar must be an integer with |k| < 2^22, got ${k}`);
    const r = this.output(out);
    const n = this.n;
    for (let j = 0; j < this.primes.length; j++) {
      const p = this.primes[j] as number;
      let w = k % p;
      if (w < 0) w += p;
      const wq = w / p;
      const end = (j + 1) * n;
      for (let i = j * n; i < end; i++) {
        const x = a[i] as number;
        r[i] = fold((Math.imul(x, w) - Math.imul((x * wq) | 0, p)) | 0, p);
      }
    }
    return r;
  }
}

/** SHAKE256 output per counter block; large enough that hashing overhead is small per sampled coefficient. */
const STREAM_BLOCK = 1 << 14;
const STREAM_DOMAIN = 'federa/ckks-multiparty/seeded-stream/v1';

/** Where a stream stands, for a stream on another thread to carry on from: it holds the seed, a secret. */
export interface SeededStreamState {
  seed: Uint8Array;
  label: string;
  /** Bytes read or skipped so far. */
  offset: number;
}

/**
 * Deterministic randomness from a seed: block c is SHAKE256(domain || len(label) || label || len(seed) || seed || c),
 * so the output is one infinite stream per (seed, label) however bytes() calls split it, and any part of it can be
 * read without the parts before (threads each encrypt some ciphertexts of one vector from where its stream is).
 */
export class SeededStream {
  private readonly seed: Uint8Array;
  private readonly label: string;
  private readonly prefix: Hash;
  private block: Uint8Array = new Uint8Array(0);
  private blockIndex = -1;
  private offset = 0;

  constructor(seed: Uint8Array, label: string) {
    // A short seed is a guessable key; secrets come from crypto.randomBytes(32).
    if (!(seed instanceof Uint8Array) || seed.length < 16) throw new RangeError('seed must be a Uint8Array of at least 16 bytes');
    this.seed = seed.slice();
    this.label = label;
    const labelBytes = Buffer.from(label, 'utf8');
    const lengths = Buffer.alloc(8);
    lengths.writeUInt32LE(labelBytes.length, 0);
    lengths.writeUInt32LE(seed.length, 4);
    this.prefix = createHash('shake256')
      .update(STREAM_DOMAIN)
      .update(lengths.subarray(0, 4))
      .update(labelBytes)
      .update(lengths.subarray(4, 8))
      .update(seed);
  }

  /** The stream at `state.offset`: what the stream it was taken from reads next. */
  static resume(state: SeededStreamState): SeededStream {
    const stream = new SeededStream(state.seed, state.label);
    stream.skip(state.offset);
    return stream;
  }

  state(): SeededStreamState {
    return { seed: this.seed.slice(), label: this.label, offset: this.offset };
  }

  /** Bytes read or skipped so far. */
  get position(): number {
    return this.offset;
  }

  /** Moves on `count` bytes without reading them (blocks wholly skipped are never hashed). */
  skip(count: number): void {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
    this.offset += count;
  }

  private load(index: number): void {
    const c = Buffer.alloc(8);
    c.writeUInt32LE(index % TWO_32, 0);
    c.writeUInt32LE(Math.floor(index / TWO_32), 4);
    this.block = this.prefix.copy({ outputLength: STREAM_BLOCK }).update(c).digest();
    this.blockIndex = index;
  }

  bytes(count: number): Uint8Array {
    if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
    const out = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const index = Math.floor(this.offset / STREAM_BLOCK);
      if (index !== this.blockIndex) this.load(index);
      const at = this.offset - index * STREAM_BLOCK;
      const take = Math.min(count - filled, STREAM_BLOCK - at);
      out.set(this.block.subarray(at, at + take), filled);
      this.offset += take;
      filled += take;
    }
    return out;
  }

  /** `count` uniform 32-bit words, little-endian from the byte stream (host-independent). */
  words(count: number): Uint32Array {
    const b = this.bytes(4 * count);
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const o = 4 * i;
      out[i] = ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
    }
    return out;
  }
}

/** Writes small signed integers (|v| < every prime) into each prime's block of a fresh polynomial. */
function fromSmall(ring: RnsRing, values: Int32Array): Uint32Array {
  const n = ring.n;
  const out = ring.zero();
  for (let j = 0; j < ring.primes.length; j++) {
    const p = ring.primes[j] as number;
    const off = j * n;
    for (let i = 0; i < n; i++) {
      const v = values[i] as number;
      out[off + i] = v < 0 ? v + p : v;
    }
  }
  return out;
}

/** Uniform mod q: an independent uniform residue per prime (equivalent by CRT), by rejection on masked words. */
export function sampleUniform(ring: RnsRing, stream: SeededStream): Uint32Array {
  const n = ring.n;
  const out = ring.zero();
  for (let j = 0; j < ring.primes.length; j++) {
    const p = ring.primes[j] as number;
    const bits = 32 - Math.clz32(p);
    const mask = bits === 32 ? 0xffff_ffff : (1 << bits) - 1;
    // Acceptance is p / 2^bits > 1/2; ask for the expected number of words plus a margin.
    const ratio = (mask + 1) / p;
    const off = j * n;
    let filled = 0;
    while (filled < n) {
      const words = stream.words(Math.ceil((n - filled) * ratio) + 16);
      for (let w = 0; w < words.length && filled < n; w++) {
        const x = (words[w] as number) & mask;
        if (x < p) out[off + filled++] = x;
      }
    }
  }
  return out;
}

/** Coefficients uniform in {-1, 0, 1}: bytes below 255 taken mod 3 (255 = 3 * 85, so no bias). */
export function sampleTernary(ring: RnsRing, stream: SeededStream): Uint32Array {
  const n = ring.n;
  const values = new Int32Array(n);
  let filled = 0;
  while (filled < n) {
    const bytes = stream.bytes(n - filled + 16);
    for (let b = 0; b < bytes.length && filled < n; b++) {
      const x = bytes[b] as number;
      if (x < 255) values[filled++] = (x % 3) - 1;
    }
  }
  return fromSmall(ring, values);
}

function popcount(x: number): number {
  let v = x - ((x >>> 1) & 0x5555_5555);
  v = (v & 0x3333_3333) + ((v >>> 2) & 0x3333_3333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f_0f0f, 0x0101_0101) >>> 24) & 0xff;
}

/** Words sampleCenteredBinomial reads: a fixed count, so a stream can skip past it. */
export function centeredBinomialWords(n: number, k = 21): number {
  if (!Number.isInteger(k) || k < 1 || k > 1024) throw new RangeError(`k must be an integer in [1, 1024], got ${k}`);
  return 2 * Math.ceil(k / 32) * n;
}

/** Sum of k coin differences, as SEAL does: |e| <= k, variance k/2. */
export function sampleCenteredBinomial(ring: RnsRing, stream: SeededStream, k = 21): Uint32Array {
  const n = ring.n;
  const chunks = Math.ceil(k / 32);
  const words = stream.words(centeredBinomialWords(n, k));
  const values = new Int32Array(n);
  let w = 0;
  for (let i = 0; i < n; i++) {
    let e = 0;
    for (let c = 0, left = k; c < chunks; c++, left -= 32) {
      const mask = left >= 32 ? 0xffff_ffff : (1 << left) - 1;
      e += popcount((words[w++] as number) & mask) - popcount((words[w++] as number) & mask);
    }
    values[i] = e;
  }
  return fromSmall(ring, values);
}

/** Low bits below sampleWide's cells of width 2^shift. */
const wideShift = (sigma: number): number => Math.max(0, Math.floor(Math.log2(sigma)) - 24);

/** Words sampleWide reads: a fixed count, so a stream can skip past it. */
export function wideNoiseWords(n: number, sigma: number): number {
  // Four words per pair of normals (two 53-bit uniforms), plus two low-bits words per coefficient when cells are used.
  return 4 * Math.ceil(n / 2) + (wideShift(sigma) > 0 ? 2 * n : 0);
}

/**
 * Wide noise for smudging, standard deviation sigma (1 <= sigma <= 2^60).
 *
 * Distribution: y = sigma * z with z standard normal from Box-Muller on 53-bit uniforms (u1 in (0, 1], so
 * |z| <= sqrt(2 * 53 * ln 2) ≈ 8.57: a hard tail bound |e| <= 8.57 * sigma + cell). Then e = round(y) when
 * sigma < 2^25; otherwise e = floor(y / c) * c + u with cell c = 2^(floor(log2 sigma) - 24) and u uniform in [0, c),
 * so every integer is reachable although y itself has only 53 bits of precision (a float-rounded value would sit
 * on a lattice of multiples of its ulp, which would defeat smudging). Cells are at most sigma * 2^-24 wide, so the
 * histogram is Gaussian to that resolution; the mean is offset by -1/2, immaterial at this width.
 */
export function sampleWide(ring: RnsRing, stream: SeededStream, sigma: number): Uint32Array {
  if (!Number.isFinite(sigma) || sigma < 1 || sigma > 2 ** 60) throw new RangeError(`sigma must be in [1, 2^60], got ${sigma}`);
  // Noise that can wrap around q would be meaningless rather than wide.
  if (9 * sigma >= Number(ring.modulus) / 2) throw new RangeError(`sigma ${sigma} is too large for a ${ring.modulus.toString(2).length}-bit modulus`);
  const n = ring.n;
  const shift = wideShift(sigma);
  const cell = 2 ** shift;
  const words = stream.words(wideNoiseWords(n, sigma));
  const hi = new Float64Array(n);
  const lo = new Float64Array(n);
  let w = 0;
  const uniform53 = (): number => {
    const a = (words[w++] as number) >>> 11;
    const b = words[w++] as number;
    return a * TWO_32 + b;
  };
  for (let i = 0; i < n; i += 2) {
    const u1 = (uniform53() + 1) / TWO_53;
    const u2 = uniform53() / TWO_53;
    const r = sigma * Math.sqrt(-2 * Math.log(u1));
    const th = 2 * Math.PI * u2;
    hi[i] = r * Math.cos(th);
    if (i + 1 < n) hi[i + 1] = r * Math.sin(th);
  }
  if (shift === 0) {
    for (let i = 0; i < n; i++) hi[i] = Math.round(hi[i] as number);
  } else {
    for (let i = 0; i < n; i++) {
      hi[i] = Math.floor((hi[i] as number) / cell);
      // Up to 36 uniform bits from two words (shift <= 36 for sigma <= 2^60).
      const a = words[w++] as number;
      const b = words[w++] as number;
      lo[i] = (a % 2 ** Math.max(0, shift - 32)) * TWO_32 + (shift >= 32 ? b : b % cell);
    }
  }
  // e = hi * cell + lo, reduced per prime without leaving exact integer arithmetic.
  const out = ring.zero();
  for (let j = 0; j < ring.primes.length; j++) {
    const p = ring.primes[j] as number;
    const c = cell % p;
    const off = j * n;
    for (let i = 0; i < n; i++) {
      let h = (hi[i] as number) % p;
      if (h < 0) h += p;
      let r = mulMod(h, c, p) + ((lo[i] as number) % p);
      if (r >= p) r -= p;
      out[off + i] = r;
    }
  }
  return out;
}
