import { describe, expect, it } from 'vitest';
import {
  nttPrimes,
  RnsRing,
  sampleCenteredBinomial,
  sampleTernary,
  sampleUniform,
  sampleWide,
  SeededStream,
} from './ring.js';

const SEED = new Uint8Array(32).map((_, i) => i * 7 + 1);

function stream(label: string): SeededStream {
  return new SeededStream(SEED, label);
}

function isPrimeSlow(p: number): boolean {
  if (p < 2) return false;
  for (let d = 2; d * d <= p; d++) if (p % d === 0) return false;
  return true;
}

function mod(x: bigint, q: bigint): bigint {
  const r = x % q;
  return r < 0n ? r + q : r;
}

/** Coefficient k of the negacyclic product a*b mod (X^n + 1), as an integer (not reduced). */
function schoolbookCoeff(a: readonly bigint[], b: readonly bigint[], k: number): bigint {
  const n = a.length;
  let s = 0n;
  for (let i = 0; i < n; i++) {
    const j = k - i;
    if (j >= 0) s += (a[i] as bigint) * (b[j] as bigint);
    else s -= (a[i] as bigint) * (b[j + n] as bigint);
  }
  return s;
}

function ring4096(): RnsRing {
  return RnsRing.create(4096, nttPrimes(4096, 27, 4));
}

describe('nttPrimes', () => {
  it('returns distinct descending primes ≡ 1 mod 2n below 2^bits', () => {
    for (const [n, bits, count] of [
      [16, 20, 5],
      [4096, 27, 4],
      [8192, 30, 3],
    ] as const) {
      const ps = nttPrimes(n, bits, count);
      expect(ps).toHaveLength(count);
      for (let i = 0; i < ps.length; i++) {
        const p = ps[i] as number;
        expect(p).toBeLessThan(2 ** bits);
        expect(p % (2 * n)).toBe(1);
        expect(isPrimeSlow(p)).toBe(true);
        if (i > 0) expect(p).toBeLessThan(ps[i - 1] as number);
      }
    }
  });

  it('returns the largest such primes (no candidate above the first is prime)', () => {
    const n = 1024;
    const bits = 24;
    const [p0, p1] = nttPrimes(n, bits, 2) as [number, number];
    for (let c = p0 + 2 * n; c < 2 ** bits; c += 2 * n) expect(isPrimeSlow(c)).toBe(false);
    for (let c = p1 + 2 * n; c < p0; c += 2 * n) expect(isPrimeSlow(c)).toBe(false);
  });

  it('is deterministic', () => {
    expect(nttPrimes(4096, 27, 4)).toEqual(nttPrimes(4096, 27, 4));
  });
});

describe('RnsRing.create', () => {
  it('rejects bad parameters', () => {
    const [p] = nttPrimes(16, 20, 1) as [number];
    expect(() => RnsRing.create(24, [p])).toThrow(RangeError);
    expect(() => RnsRing.create(8, [p])).toThrow(RangeError);
    expect(() => RnsRing.create(16, [])).toThrow(RangeError);
    expect(() => RnsRing.create(16, [p, p])).toThrow(RangeError);
    expect(() => RnsRing.create(16, [113])).toThrow(RangeError); // prime, but 113 ≡ 17 mod 32
    expect(() => RnsRing.create(16, [33 * 97])).toThrow(RangeError); // ≡ 1 mod 32 but composite
    const [big] = nttPrimes(16, 31, 1) as [number];
    expect(big).toBeGreaterThan(2 ** 30);
    expect(() => RnsRing.create(16, [big])).toThrow(RangeError);
    expect(() => RnsRing.create(16, [p])).not.toThrow();
  });

  it('exposes n, primes and their product', () => {
    const ps = nttPrimes(64, 30, 3);
    const ring = RnsRing.create(64, ps);
    expect(ring.n).toBe(64);
    expect(ring.primes).toEqual(ps);
    expect(ring.modulus).toBe(ps.reduce((a, p) => a * BigInt(p), 1n));
    expect(ring.zero()).toHaveLength(64 * 3);
  });
});

describe('RnsRing arithmetic', () => {
  it('multiply agrees with a BigInt schoolbook negacyclic product (n = 16)', () => {
    for (const bits of [20, 30]) {
      const ring = RnsRing.create(16, nttPrimes(16, bits, 3));
      for (let trial = 0; trial < 5; trial++) {
        const a = sampleUniform(ring, stream(`mul16-a-${bits}-${trial}`));
        const b = sampleUniform(ring, stream(`mul16-b-${bits}-${trial}`));
        const aCopy = a.slice();
        const ab = ring.multiply(a, b);
        expect(a).toEqual(aCopy);
        const ai = ring.toCenteredBigInts(a);
        const bi = ring.toCenteredBigInts(b);
        const got = ring.toCenteredBigInts(ab);
        for (let k = 0; k < 16; k++) expect(mod(got[k] as bigint, ring.modulus)).toBe(mod(schoolbookCoeff(ai, bi, k), ring.modulus));
      }
    }
  });

  it('multiply agrees with BigInt schoolbook on sampled coefficients (n = 4096, 4 primes of 27 bits)', () => {
    const ring = ring4096();
    const a = sampleUniform(ring, stream('mul4096-a'));
    const b = sampleUniform(ring, stream('mul4096-b'));
    const got = ring.toCenteredBigInts(ring.multiply(a, b));
    const ai = ring.toCenteredBigInts(a);
    const bi = ring.toCenteredBigInts(b);
    for (const k of [0, 1, 2047, 2048, 3001, 4095]) {
      expect(mod(got[k] as bigint, ring.modulus)).toBe(mod(schoolbookCoeff(ai, bi, k), ring.modulus));
    }
  });

  it('X * X^(n-1) = -1 (negacyclic wrap)', () => {
    const ring = RnsRing.create(32, nttPrimes(32, 28, 2));
    const x = new Float64Array(32);
    x[1] = 1;
    const y = new Float64Array(32);
    y[31] = 1;
    const got = ring.toCenteredNumbers(ring.multiply(ring.fromSigned(x), ring.fromSigned(y)));
    const want = new Float64Array(32);
    want[0] = -1;
    expect(got).toEqual(want);
  });

  it('mulNtt of NTT forms is the NTT of the product; ntt then intt is the identity', () => {
    const ring = ring4096();
    const a = sampleUniform(ring, stream('ntt-a'));
    const b = sampleUniform(ring, stream('ntt-b'));
    const fa = ring.ntt(a.slice());
    expect(fa).not.toEqual(a);
    expect(ring.intt(fa.slice())).toEqual(a);
    const fb = ring.ntt(b.slice());
    const prod = ring.intt(ring.mulNtt(fa, fb));
    expect(prod).toEqual(ring.multiply(a, b));
    for (const x of fa) expect(x).toBeLessThan(ring.primes[0] as number);
  });

  it('add, sub, neg and mulScalar agree with BigInt', () => {
    const ring = RnsRing.create(64, nttPrimes(64, 29, 3));
    const q = ring.modulus;
    const a = sampleUniform(ring, stream('lin-a'));
    const b = sampleUniform(ring, stream('lin-b'));
    const ai = ring.toCenteredBigInts(a);
    const bi = ring.toCenteredBigInts(b);
    const check = (poly: Uint32Array, f: (x: bigint, y: bigint) => bigint): void => {
      const got = ring.toCenteredBigInts(poly);
      for (let i = 0; i < 64; i++) expect(mod(got[i] as bigint, q)).toBe(mod(f(ai[i] as bigint, bi[i] as bigint), q));
    };
    check(ring.add(a, b), (x, y) => x + y);
    check(ring.sub(a, b), (x, y) => x - y);
    check(ring.neg(a), (x) => -x);
    for (const k of [0, 1, -1, 3, -(2 ** 22 - 1), 2 ** 22 - 1]) check(ring.mulScalar(a, k), (x) => x * BigInt(k));
    expect(() => ring.mulScalar(a, 2 ** 22)).toThrow(RangeError);
    // out may alias an input.
    const c = a.slice();
    ring.add(c, b, c);
    expect(c).toEqual(ring.add(a, b));
    expect(() => ring.add(a, new Uint32Array(3))).toThrow(RangeError);
  });
});

describe('RnsRing conversions', () => {
  it('fromBigInts / toCenteredBigInts round-trip near ±q/2', () => {
    const ring = RnsRing.create(16, nttPrimes(16, 30, 4));
    const q = ring.modulus;
    const half = q / 2n; // q is odd: the centred range is [-half, half]
    const values = [half, half - 1n, -half, -half + 1n, 0n, 1n, -1n, half - 12345n, -half + 98765n, 2n ** 100n, -(2n ** 100n), 7n, -7n, 123456789012345678901234n, -5n, 5n];
    expect(ring.toCenteredBigInts(ring.fromBigInts(values))).toEqual(values);
    // Out of range values wrap into the centred range.
    const wrapped = ring.toCenteredBigInts(ring.fromBigInts(values.map((v) => v + q)));
    expect(wrapped).toEqual(values);
    const over = ring.toCenteredBigInts(ring.fromBigInts([half + 1n, ...values.slice(1)]));
    expect(over[0]).toBe(half + 1n - q);
  });

  it('toCenteredNumbers is exact below 2^53 and within relative 2^-50 above', () => {
    const ring = ring4096();
    const n = ring.n;
    const small = new Float64Array(n);
    const words = stream('numbers-small').words(2 * n);
    for (let i = 0; i < n; i++) {
      const mag = ((words[2 * i] as number) >>> 11) * 2 ** 32 + (words[2 * i + 1] as number); // < 2^53
      const v = Math.floor(mag / 2 ** (i % 40));
      small[i] = i % 2 && v !== 0 ? -v : v;
    }
    small[0] = Number.MAX_SAFE_INTEGER;
    small[1] = -Number.MAX_SAFE_INTEGER;
    const poly = ring.fromSigned(small);
    expect(ring.toCenteredNumbers(poly)).toEqual(small);
    expect(ring.toCenteredBigInts(poly).map(Number)).toEqual(Array.from(small));

    const wide = sampleUniform(ring, stream('numbers-wide'));
    const exact = ring.toCenteredBigInts(wide);
    const approx = ring.toCenteredNumbers(wide);
    let checkedLarge = 0;
    for (let i = 0; i < n; i++) {
      const e = exact[i] as bigint;
      const x = approx[i] as number;
      if (e > -(2n ** 53n) && e < 2n ** 53n) {
        expect(x).toBe(Number(e));
      } else {
        checkedLarge++;
        // Compare in BigInt scaled space to avoid the reference itself being rounded.
        const err = e - BigInt(x);
        const abs = err < 0n ? -err : err;
        const mag = e < 0n ? -e : e;
        expect(abs * 2n ** 50n <= mag).toBe(true);
        expect(Math.sign(x)).toBe(e < 0n ? -1 : 1);
      }
    }
    expect(checkedLarge).toBe(n);
  });

  it('fromSigned rejects non-integers and values beyond 2^53', () => {
    const ring = RnsRing.create(16, nttPrimes(16, 30, 2));
    const v = new Float64Array(16);
    v[3] = 0.5;
    expect(() => ring.fromSigned(v)).toThrow(RangeError);
    v[3] = 2 ** 53;
    expect(() => ring.fromSigned(v)).toThrow(RangeError);
    expect(() => ring.fromSigned(new Int32Array(8))).toThrow(RangeError);
    const ints = Int32Array.from({ length: 16 }, (_, i) => (i - 8) * 100_000_000);
    expect(Array.from(ring.toCenteredNumbers(ring.fromSigned(ints)))).toEqual(Array.from(ints));
  });
});

describe('SeededStream', () => {
  it('is deterministic per (seed, label), differs across labels and seeds, and does not depend on chunking', () => {
    const a = new SeededStream(SEED, 'x').bytes(40_000);
    expect(new SeededStream(SEED, 'x').bytes(40_000)).toEqual(a);
    expect(new SeededStream(SEED, 'y').bytes(40_000)).not.toEqual(a);
    const otherSeed = SEED.slice();
    otherSeed[0] = (otherSeed[0] as number) ^ 1;
    expect(new SeededStream(otherSeed, 'x').bytes(40_000)).not.toEqual(a);
    const s = new SeededStream(SEED, 'x');
    const parts = [s.bytes(1), s.bytes(16_383), s.bytes(1), s.bytes(23_615)];
    const joined = new Uint8Array(40_000);
    let at = 0;
    for (const p of parts) {
      joined.set(p, at);
      at += p.length;
    }
    expect(joined).toEqual(a);
  });

  it('rejects short seeds', () => {
    expect(() => new SeededStream(new Uint8Array(8), 'x')).toThrow(RangeError);
  });
});

describe('samplers', () => {
  const ring = ring4096();
  const n = ring.n;

  /** Each prime's block must encode the same small integer. */
  function consistent(poly: Uint32Array): Float64Array {
    const values = ring.toCenteredNumbers(poly);
    for (let j = 0; j < ring.primes.length; j++) {
      const p = ring.primes[j] as number;
      for (let i = 0; i < n; i++) {
        const v = values[i] as number;
        expect(poly[j * n + i]).toBe(((v % p) + p) % p);
      }
    }
    return values;
  }

  it('sampleTernary gives {-1, 0, 1} with roughly equal frequencies', () => {
    const counts = new Map<number, number>();
    for (let t = 0; t < 4; t++) {
      for (const v of consistent(sampleTernary(ring, stream(`ternary-${t}`)))) counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([-1, 0, 1]);
    const total = 4 * n;
    // 4 * sigma of a binomial count is ~1.2% of the total here.
    for (const c of counts.values()) expect(Math.abs(c / total - 1 / 3)).toBeLessThan(0.02);
    expect(sampleTernary(ring, stream('ternary-0'))).toEqual(sampleTernary(ring, stream('ternary-0')));
  });

  it('sampleCenteredBinomial has |e| <= k and variance near k/2', () => {
    for (const k of [21, 3, 40]) {
      let sum = 0;
      let sq = 0;
      let count = 0;
      for (let t = 0; t < 4; t++) {
        for (const v of consistent(sampleCenteredBinomial(ring, stream(`cbd-${k}-${t}`), k))) {
          expect(Math.abs(v)).toBeLessThanOrEqual(k);
          sum += v;
          sq += v * v;
          count++;
        }
      }
      const mean = sum / count;
      const variance = sq / count - mean * mean;
      expect(Math.abs(mean)).toBeLessThan(0.1 * Math.sqrt(k));
      expect(Math.abs(variance / (k / 2) - 1)).toBeLessThan(0.06);
    }
  });

  it('sampleUniform gives residues below p with mean near p/2', () => {
    const poly = sampleUniform(ring, stream('uniform'));
    for (let j = 0; j < ring.primes.length; j++) {
      const p = ring.primes[j] as number;
      let sum = 0;
      let top = 0;
      for (let i = 0; i < n; i++) {
        const x = poly[j * n + i] as number;
        expect(x).toBeLessThan(p);
        sum += x;
        if (x >= p / 2) top++;
      }
      // Standard error of the mean is p / sqrt(12 n) ≈ 0.0045 p.
      expect(Math.abs(sum / n / p - 0.5)).toBeLessThan(0.02);
      expect(Math.abs(top / n - 0.5)).toBeLessThan(0.04);
    }
    expect(sampleUniform(ring, stream('uniform'))).toEqual(poly);
    expect(sampleUniform(ring, stream('uniform-2'))).not.toEqual(poly);
  });

  it('sampleWide has standard deviation within 5% of sigma', () => {
    for (const sigma of [2 ** 40, 3.2, 2 ** 20]) {
      const values = consistent(sampleWide(ring, stream(`wide-${sigma}`), sigma));
      let sum = 0;
      let sq = 0;
      let max = 0;
      for (const v of values) {
        expect(Number.isInteger(v)).toBe(true);
        sum += v;
        sq += v * v;
        max = Math.max(max, Math.abs(v));
      }
      const mean = sum / n;
      const sd = Math.sqrt(sq / n - mean * mean);
      expect(Math.abs(sd / sigma - 1)).toBeLessThan(0.05);
      expect(Math.abs(mean)).toBeLessThan(0.1 * sigma);
      expect(max).toBeLessThanOrEqual(8.6 * sigma + 1);
    }
  });

  it('sampleWide reaches odd integers when sigma is large (no float-lattice gaps)', () => {
    const values = sampleWide(ring, stream('wide-odd'), 2 ** 50);
    const big = ring.toCenteredBigInts(values);
    const odd = big.filter((v) => (v & 1n) === 1n).length;
    expect(Math.abs(odd / n - 0.5)).toBeLessThan(0.05);
  });

  it('sampleWide refuses sigma that would wrap around q', () => {
    const small = RnsRing.create(16, nttPrimes(16, 30, 1));
    expect(() => sampleWide(small, stream('wrap'), 2 ** 27)).toThrow(RangeError);
    expect(() => sampleWide(ring, stream('wrap'), 0)).toThrow(RangeError);
  });
});

describe('sanity', () => {
  it('runs a 4096-coefficient, 4-prime NTT multiply', () => {
    const ring = ring4096();
    const a = sampleTernary(ring, stream('sanity-a'));
    const b = sampleCenteredBinomial(ring, stream('sanity-b'));
    const ab = ring.multiply(a, b);
    expect(ab).toHaveLength(4 * 4096);
    // Products of small polynomials stay small: |coeff| <= n * 1 * 21.
    for (const v of ring.toCenteredNumbers(ab)) expect(Math.abs(v)).toBeLessThanOrEqual(4096 * 21);
  });
});
