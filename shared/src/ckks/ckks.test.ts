import { crc32 } from 'node:zlib';
import initialize from 'node-seal/throws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createPrng, type Prng } from '../model/index.js';
import { PAYLOAD_HEADER_BYTES, readPayloadHeader } from './payload.js';
import { SEED_BYTES } from './seal-format.js';
import {
  CkksContext,
  CkksError,
  DEFAULT_CKKS_PARAMETERS,
  fedAvgErrorBound,
  FRESH_NOISE_MAX,
  parametersFingerprint,
  sealHeapBytes,
  sumErrorBound,
  type CkksErrorCode,
  type CkksParameters,
} from './index.js';

const N = DEFAULT_CKKS_PARAMETERS.polyModulusDegree;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** A site's update vector as sites build it: (trained - base) * w per parameter, then w. */
function siteVector(prng: Prng, params: number, weight: number, maxUpdate = 0.1): Float32Array {
  const v = new Float32Array(params + 1);
  for (let i = 0; i < params; i++) {
    // Magnitudes spread over 1e-4..maxUpdate with random signs, like real model updates.
    const magnitude = 1e-4 * (maxUpdate / 1e-4) ** prng.nextFloat();
    v[i] = (prng.nextFloat() < 0.5 ? -1 : 1) * magnitude * weight;
  }
  v[params] = weight;
  return v;
}

/** Plaintext FedAvg in float64 over the same float32 vectors: sum[i] / sum[last]. */
function plainFedAvg(vectors: Float32Array[]): Float64Array {
  const len = (vectors[0] as Float32Array).length;
  const sum = new Float64Array(len);
  for (const v of vectors) for (let i = 0; i < len; i++) sum[i] = (sum[i] as number) + (v[i] as number);
  const out = new Float64Array(len - 1);
  for (let i = 0; i < len - 1; i++) out[i] = (sum[i] as number) / (sum[len - 1] as number);
  return out;
}

function fedAvgFromSum(sum: Float64Array): Float64Array {
  const w = sum[sum.length - 1] as number;
  return sum.slice(0, -1).map((v) => v / w);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

function expectCkksError(fn: () => unknown, code: CkksErrorCode, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(CkksError);
  expect((caught as CkksError).code).toBe(code);
  if (message !== undefined) expect((caught as CkksError).message).toMatch(message);
}

/** Rewrites a payload's CRC so a deliberate change gets past the checksum to the deeper checks. */
function withFixedCrc(payload: Uint8Array): Uint8Array {
  const out = payload.slice();
  new DataView(out.buffer).setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

describe('CKKS codec', () => {
  let site: CkksContext;
  let coordinator: CkksContext;
  let secretKey: Uint8Array;
  let publicParams: Uint8Array;

  beforeAll(async () => {
    const provisioning = await CkksContext.create();
    ({ secretKey, publicParams } = provisioning.generateKeys());
    provisioning.dispose();
    // Sites and the coordinator rebuild their contexts from what their kits hold.
    site = await CkksContext.fromKey(secretKey);
    coordinator = await CkksContext.fromKey(publicParams);
  });

  afterAll(() => {
    site.dispose();
    coordinator.dispose();
  });

  describe('parameters', () => {
    it('uses 128-bit-secure defaults that hold 1,000 sites of values up to 1e4 and send 46 bits per value', () => {
      expect(site.parameters).toEqual(DEFAULT_CKKS_PARAMETERS);
      expect(site.modulus.bits).toBe(54);
      expect(site.uploadBits).toBe(46);
      expect(fedAvgErrorBound(DEFAULT_CKKS_PARAMETERS, { sites: 1, totalWeight: 1 })).toBeLessThan(1e-6);
      expect(fedAvgErrorBound(DEFAULT_CKKS_PARAMETERS, { sites: 1000, totalWeight: 1000 })).toBeLessThan(1e-6);
    });

    it('refuses parameters below 128-bit security or whose sums could wrap around q', async () => {
      const insecure: CkksParameters = { ...DEFAULT_CKKS_PARAMETERS, coeffModulusBits: 55 };
      await expect(CkksContext.create(insecure)).rejects.toMatchObject({ code: 'INVALID_PARAMETERS', message: /128-bit/ });
      const overflowing: CkksParameters = { ...DEFAULT_CKKS_PARAMETERS, scaleBits: 30 };
      await expect(CkksContext.create(overflowing)).rejects.toMatchObject({ code: 'INVALID_PARAMETERS', message: /wrap|beyond q/ });
      await expect(CkksContext.create({ ...DEFAULT_CKKS_PARAMETERS, polyModulusDegree: 3000 })).rejects.toMatchObject({
        code: 'INVALID_PARAMETERS',
      });
    });

    it('fingerprints every parameter', () => {
      const base = parametersFingerprint(DEFAULT_CKKS_PARAMETERS);
      expect(base).toMatch(/^[0-9a-f]{64}$/);
      expect(site.fingerprint).toBe(base);
      for (const change of [{ scaleBits: 28 }, { droppedBits: 7 }, { maxSites: 999 }, { maxAbsValue: 1e3 }, { polyModulusDegree: 4096 }]) {
        expect(parametersFingerprint({ ...DEFAULT_CKKS_PARAMETERS, ...change })).not.toBe(base);
      }
    });
  });

  describe('round trip and aggregation', () => {
    it('decrypts single updates of lengths that are not multiples of N, within the error bound', () => {
      const prng = createPrng(7);
      // Covers a partly filled ciphertext, exact multiples and more than one NTT batch of 15 ciphertexts.
      for (const length of [1, 2, N - 1, N, N + 1, 16 * N + 5]) {
        const v = new Float64Array(length);
        for (let i = 0; i < length; i++) v[i] = (prng.nextFloat() * 2 - 1) * 10_000;
        const payload = site.encryptVector(v, secretKey);
        expect(site.inspectPayload(payload)).toMatchObject({ kind: 'update', vectorLength: length, ciphertexts: Math.ceil(length / N), sites: 1 });
        const back = site.decryptVector(payload, secretKey);
        expect(maxAbsDiff(back, v)).toBeLessThanOrEqual(sumErrorBound(site.parameters, 1));
      }
    });

    it('sums the updates of several sites into plaintext FedAvg within 1e-6', () => {
      const prng = createPrng(11);
      const params = 3 * N + 17;
      const weights = [10, 250, 3_000, 10_000, 42];
      const vectors = weights.map((w) => siteVector(prng, params, w));
      const acc = coordinator.createAccumulator(publicParams);
      expectCkksError(() => acc.result(), 'EMPTY_SUM');
      for (const v of vectors) acc.add(site.encryptVector(v, secretKey));
      expect(acc.sites).toBe(weights.length);
      expect(acc.vectorLength).toBe(params + 1);
      const aggregate = acc.result();
      expect(coordinator.inspectPayload(aggregate)).toMatchObject({ kind: 'aggregate', sites: 5, vectorLength: params + 1 });
      const sum = site.decryptVector(aggregate, secretKey);
      const error = maxAbsDiff(fedAvgFromSum(sum), plainFedAvg(vectors));
      expect(error).toBeLessThan(1e-6);
      const totalWeight = weights.reduce((a, b) => a + b, 0);
      expect(error).toBeLessThanOrEqual(fedAvgErrorBound(site.parameters, { sites: 5, totalWeight, maxAbsUpdate: 0.1 }));
    });

    it('meets 1e-6 in the worst case the bound allows: one site of weight 1 with updates of ±1', () => {
      const v = new Float32Array(N + 1);
      for (let i = 0; i < N; i++) v[i] = i % 2 === 0 ? 1 : -1;
      v[N] = 1;
      const acc = coordinator.createAccumulator(publicParams);
      acc.add(site.encryptVector(v, secretKey));
      const error = maxAbsDiff(fedAvgFromSum(site.decryptVector(acc.result(), secretKey)), plainFedAvg([v]));
      expect(error).toBeLessThan(1e-6);
    });

    it('accumulates 1,000 sites at the extremes of the value range without overflow, within the bound', () => {
      // A small vector (two ciphertexts) stands in for a model; values hit ±maxAbsValue where the sum is
      // largest, which is where a wrap around q would show.
      const prng = createPrng(1000);
      const params = N + 9;
      const acc = coordinator.createAccumulator(publicParams);
      const vectors: Float32Array[] = [];
      for (let k = 0; k < 1000; k++) {
        const weight = k % 2 === 0 ? 10_000 : 1 + Math.floor(prng.nextFloat() * 100);
        const v = siteVector(prng, params, weight, 1);
        v[0] = 10_000;
        v[1] = -10_000;
        vectors.push(v);
        acc.add(site.encryptVector(v, secretKey));
      }
      const sum = site.decryptVector(acc.result(), secretKey);
      const plainSum = new Float64Array(params + 1);
      for (const v of vectors) for (let i = 0; i <= params; i++) plainSum[i] = (plainSum[i] as number) + (v[i] as number);
      expect(sum[0]).toBeCloseTo(1e7, 3);
      expect(sum[1]).toBeCloseTo(-1e7, 3);
      expect(maxAbsDiff(sum, plainSum)).toBeLessThanOrEqual(sumErrorBound(site.parameters, 1000));
      expect(maxAbsDiff(fedAvgFromSum(sum), plainFedAvg(vectors))).toBeLessThan(1e-6);
      // The 1,001st site is refused: the overflow bound was only proven for 1,000.
      expectCkksError(() => acc.add(site.encryptVector(vectors[0] as Float32Array, secretKey)), 'TOO_MANY_SITES');
    });

    it('resumes a sum from a saved partial aggregate', () => {
      const prng = createPrng(5);
      const vectors = [1, 2, 3].map((k) => siteVector(prng, 100, 100 * k));
      const first = coordinator.createAccumulator(publicParams);
      first.add(site.encryptVector(vectors[0] as Float32Array, secretKey));
      first.add(site.encryptVector(vectors[1] as Float32Array, secretKey));
      const saved = first.result();
      const resumed = coordinator.createAccumulator(publicParams);
      resumed.add(saved);
      resumed.add(site.encryptVector(vectors[2] as Float32Array, secretKey));
      expect(resumed.sites).toBe(3);
      expect(maxAbsDiff(fedAvgFromSum(site.decryptVector(resumed.result(), secretKey)), plainFedAvg(vectors))).toBeLessThan(1e-6);
      expectCkksError(() => resumed.add(saved), 'DUPLICATE');
    });

    it('sees fresh SEAL noise within the bound the error analysis assumes', async () => {
      // Without dropped bits the decrypted error of an encryption of zero is the noise plus rounding.
      const exact = await CkksContext.create({ ...DEFAULT_CKKS_PARAMETERS, droppedBits: 0 });
      try {
        const keys = exact.generateKeys();
        const zeros = new Float64Array(20 * N);
        const back = exact.decryptVector(exact.encryptVector(zeros, keys.secretKey), keys.secretKey);
        const maxNoise = Math.max(...Array.from(back, (v) => Math.abs(v) * 2 ** exact.parameters.scaleBits));
        expect(maxNoise).toBeGreaterThan(0);
        expect(maxNoise).toBeLessThanOrEqual(FRESH_NOISE_MAX);
      } finally {
        exact.dispose();
      }
    });
  });

  describe('refusals', () => {
    const prng = createPrng(3);
    const vector = (): Float32Array => siteVector(prng, N + 3, 50);

    it('refuses values the parameters cannot hold', () => {
      const v = vector();
      v[7] = 10_001;
      expectCkksError(() => site.encryptVector(v, secretKey), 'VALUE_OUT_OF_RANGE', /value 7 .*10001/);
      v[7] = Number.NaN;
      expectCkksError(() => site.encryptVector(v, secretKey), 'VALUE_OUT_OF_RANGE');
      expectCkksError(() => site.encryptVector(new Float32Array(0), secretKey), 'VALUE_OUT_OF_RANGE');
    });

    it('refuses payloads made for other parameters or another key', async () => {
      const other = await CkksContext.create({ ...DEFAULT_CKKS_PARAMETERS, scaleBits: 28 });
      try {
        const otherKeys = other.generateKeys();
        const acc = coordinator.createAccumulator(publicParams);
        expectCkksError(() => acc.add(other.encryptVector(vector(), otherKeys.secretKey)), 'PARAMETER_MISMATCH', /other parameters/);
        expectCkksError(() => site.decryptVector(site.encryptVector(vector(), secretKey), otherKeys.secretKey), 'PARAMETER_MISMATCH');
        expectCkksError(() => coordinator.createAccumulator(otherKeys.publicParams), 'PARAMETER_MISMATCH');
      } finally {
        other.dispose();
      }
      const foreign = site.generateKeys();
      const acc = coordinator.createAccumulator(publicParams);
      expectCkksError(() => acc.add(site.encryptVector(vector(), foreign.secretKey)), 'KEY_MISMATCH');
      expectCkksError(() => site.decryptVector(site.encryptVector(vector(), secretKey), foreign.secretKey), 'KEY_MISMATCH');
    });

    it('refuses truncated, corrupted and foreign bytes, and keeps the sum intact', () => {
      const vectors = [vector(), vector()];
      const acc = coordinator.createAccumulator(publicParams);
      acc.add(site.encryptVector(vectors[0] as Float32Array, secretKey));
      const good = site.encryptVector(vectors[1] as Float32Array, secretKey);

      expectCkksError(() => acc.add(good.subarray(0, good.length - 1)), 'TRUNCATED');
      expectCkksError(() => acc.add(good.subarray(0, 50)), 'TRUNCATED');
      expectCkksError(() => acc.add(new Uint8Array(0)), 'TRUNCATED');
      const flipped = good.slice();
      flipped[Math.floor(flipped.length / 2)] = (flipped[Math.floor(flipped.length / 2)] as number) ^ 0x10;
      expectCkksError(() => acc.add(flipped), 'CORRUPT', /checksum/);
      const longer = new Uint8Array(good.length + 8);
      longer.set(good);
      expectCkksError(() => acc.add(longer), 'CORRUPT');
      expectCkksError(() => acc.add(Buffer.from('definitely not a ciphertext, just text')), 'BAD_MAGIC');
      const future = good.slice();
      future[4] = 99;
      expectCkksError(() => acc.add(future), 'UNSUPPORTED_VERSION');

      // Past the checksum: a header that lies about its shape, and a coefficient a real c0 cannot hold.
      const lying = good.slice();
      new DataView(lying.buffer).setUint32(8, N * 5, true);
      expectCkksError(() => acc.add(withFixedCrc(lying)), 'CORRUPT', /malformed/);
      const outOfRange = good.slice();
      const c0At = 80 + Math.ceil((N + 4) / N) * 64;
      outOfRange.fill(0xff, c0At, c0At + 6); // first c0 coefficient = 2^46 - 1 > round((q-1)/2^8)
      expectCkksError(() => acc.add(withFixedCrc(outOfRange)), 'CORRUPT', /out of range/);
      // Two ciphertexts of one update under one seed: their difference would be the difference of their plaintexts.
      const sharedSeed = good.slice();
      sharedSeed.copyWithin(PAYLOAD_HEADER_BYTES + SEED_BYTES, PAYLOAD_HEADER_BYTES, PAYLOAD_HEADER_BYTES + SEED_BYTES);
      expectCkksError(() => acc.add(withFixedCrc(sharedSeed)), 'SEED_REUSED', /ciphertext 1 reuses the seed of ciphertext 0/);
      expectCkksError(() => coordinator.updateSeeds(withFixedCrc(sharedSeed)), 'SEED_REUSED');
      expect(coordinator.updateSeeds(good).map((seed) => sha256(seed))).toEqual([0, 1].map((i) => sha256(good.subarray(80 + i * 64, 80 + (i + 1) * 64))));

      expectCkksError(() => acc.add(site.encryptVector(new Float32Array(10), secretKey)), 'LENGTH_MISMATCH');
      const aggregateSoFar = acc.result();
      expectCkksError(() => acc.add(aggregateSoFar.subarray(0, aggregateSoFar.length - 100)), 'TRUNCATED');

      // None of the refusals touched the sum.
      acc.add(good);
      expectCkksError(() => acc.add(good), 'DUPLICATE');
      expect(acc.sites).toBe(2);
      const sum = site.decryptVector(acc.result(), secretKey);
      expect(maxAbsDiff(fedAvgFromSum(sum), plainFedAvg(vectors))).toBeLessThan(1e-6);
    });

    it('refuses corrupt or mismatched key material', () => {
      const bad = secretKey.slice();
      bad[200] = (bad[200] as number) ^ 1;
      expectCkksError(() => site.encryptVector(vector(), bad), 'CORRUPT');
      expectCkksError(() => site.encryptVector(vector(), secretKey.subarray(0, 1000)), 'TRUNCATED');
      expectCkksError(() => coordinator.createAccumulator(publicParams.subarray(0, 60)), 'TRUNCATED');
      expectCkksError(() => coordinator.createAccumulator(new Uint8Array(0)), 'BAD_MAGIC');
      expect(Buffer.from(site.publicParamsFor(secretKey))).toEqual(Buffer.from(publicParams));
    });
  });

  describe('what the coordinator holds', () => {
    it('cannot decrypt: the public parameters carry no key, and SEAL cannot make a decryptor from them', async () => {
      const payload = site.encryptVector(siteVector(createPrng(9), N, 100), secretKey);
      const acc = coordinator.createAccumulator(publicParams);
      acc.add(payload);
      const aggregate = acc.result();

      // 68 bytes cannot hold a secret key: 2048 ternary coefficients carry at least 2048 * log2(3) bits.
      expect(publicParams.length).toBe(68);
      expect(publicParams.length * 8).toBeLessThan(N * Math.log2(3));
      // The codec refuses public parameters where a secret key is needed.
      expectCkksError(() => coordinator.decryptVector(aggregate, publicParams), 'BAD_MAGIC', /secret key/);

      // Nor can SEAL itself load them as a secret key or build a decryptor from an empty one.
      const seal = await initialize();
      const parms = new seal.EncryptionParameters(seal.SchemeType.ckks);
      parms.setPolyModulusDegree(N);
      const moduli = seal.CoeffModulus.Create(N, Int32Array.from([54]));
      parms.setCoeffModulus(moduli);
      const context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
      const key = new seal.SecretKey();
      try {
        expect(() => key.loadFromArray(context, publicParams)).toThrow();
        expect(() => new seal.Decryptor(context, key)).toThrow();
      } finally {
        for (const o of [key, context, moduli, parms]) o.delete();
      }

      // A key made from the same public parameters is another key: the codec refuses it, and even with the
      // payload relabelled to that key, decryption yields noise, not the update.
      const guess = coordinator.generateKeys();
      expectCkksError(() => coordinator.decryptVector(aggregate, guess.secretKey), 'KEY_MISMATCH');
      const relabelled = aggregate.slice();
      relabelled.set(guess.publicParams.subarray(48, 64), 64);
      const garbage = coordinator.decryptVector(withFixedCrc(relabelled), guess.secretKey);
      const truth = site.decryptVector(aggregate, secretKey);
      expect(maxAbsDiff(garbage, truth)).toBeGreaterThan(1e3);
    });

    it('sees neither weights nor values in the payload it sums', () => {
      // The weight travels encrypted: the same vector encrypts to different bytes every time.
      const v = siteVector(createPrng(1), 10, 1234);
      const a = site.encryptVector(v, secretKey);
      const b = site.encryptVector(v, secretKey);
      expect(Buffer.from(a.subarray(80)).equals(Buffer.from(b.subarray(80)))).toBe(false);
      expect(coordinator.inspectPayload(a)).toMatchObject({ vectorLength: 11, sites: 1 });
    });
  });

  describe('seeds', () => {
    it('draws a fresh seed for every ciphertext of every encryption, so no two ciphertexts share their c1', () => {
      // A reused seed gives two ciphertexts the same c1 = a: their c0 difference is then the plaintexts'
      // difference plus noise, readable without the key; and honest uploads of equal updates would look like replays.
      const v = siteVector(createPrng(2), 3 * N, 10);
      const payloads = [site.encryptVector(v, secretKey), site.encryptVector(v, secretKey)];
      const seeds = new Set<string>();
      for (const payload of payloads) {
        const header = readPayloadHeader(payload, N, Buffer.from(site.fingerprint, 'hex'));
        expect(header.ciphertextCount).toBe(4);
        for (let i = 0; i < header.ciphertextCount; i++) {
          const at = PAYLOAD_HEADER_BYTES + i * SEED_BYTES;
          seeds.add(Buffer.from(payload.subarray(at, at + SEED_BYTES)).toString('hex'));
        }
      }
      expect(seeds.size).toBe(8);
      expect(sha256(payloads[0]!)).not.toBe(sha256(payloads[1]!));
    });
  });

  describe('WebAssembly heap', () => {
    it('does not grow over 200 encrypt, add and decrypt cycles', async () => {
      // At N = 16384 every SEAL object is large (a key 128 KiB, a ciphertext 256 KiB), so leaking even one
      // object per call over 200 cycles (>= 25 MiB) outgrows whatever the heap had free after warm-up.
      const big = await CkksContext.create({ ...DEFAULT_CKKS_PARAMETERS, polyModulusDegree: 16384 });
      try {
        const keys = big.generateKeys();
        const v = siteVector(createPrng(2), 16384 - 1, 10);
        const cycle = (): void => {
          const acc = big.createAccumulator(keys.publicParams);
          acc.add(big.encryptVector(v, keys.secretKey));
          acc.add(big.encryptVector(v, keys.secretKey));
          big.decryptVector(acc.result(), keys.secretKey);
        };
        for (let i = 0; i < 10; i++) cycle();
        const before = sealHeapBytes();
        expect(before).toBeGreaterThan(0);
        for (let i = 0; i < 200; i++) cycle();
        expect(sealHeapBytes()).toBe(before);
      } finally {
        big.dispose();
      }
    });

    it('would notice leaked SEAL objects (the measurement can fail)', async () => {
      const before = sealHeapBytes() as number;
      // Contexts hold SEAL objects (a 16-polynomial, 256 KiB scratch ciphertext among them) until disposed:
      // leaking them must show in the heap well before 300 of them (75 MiB).
      const leaked: CkksContext[] = [];
      try {
        while ((sealHeapBytes() as number) <= before && leaked.length < 300) {
          const c = await CkksContext.create();
          leaked.push(c);
          c.encryptVector(new Float32Array(15 * N), secretKey);
        }
        expect(sealHeapBytes()).toBeGreaterThan(before);
      } finally {
        for (const c of leaked) c.dispose();
      }
    });
  });
});
