import { createHash } from 'node:crypto';
import type { CKKSEncoder, Ciphertext, Decryptor, Encryptor, Evaluator, Plaintext, SEALContext, SecretKey } from 'node-seal/throws';
import { createLogger } from '../logging/index.js';
import { CkksError } from './errors.js';
import { keyIdOf, readKeyHeader, readSecretKey, writePublicParams, writeSecretKey, type KeyHeader, type SecretKeyParts } from './keys.js';
import {
  assertSumFits,
  checkParameters,
  DEFAULT_CKKS_PARAMETERS,
  parametersFingerprint,
  type CkksParameters,
} from './params.js';
import {
  PAYLOAD_HEADER_BYTES,
  payloadBytes,
  readPayloadHeader,
  sealPayload,
  startPayload,
  type PayloadHeader,
  type PayloadKind,
} from './payload.js';
import { CiphertextAccumulator } from './accumulator.js';
import { Modulus, packBits, packedBytes } from './polyq.js';
import { CiphertextReader } from './reader.js';
import { loadSeal, sealCall, type Seal } from './seal.js';
import { MAX_POLYS, SEED_BYTES, SealLayout } from './seal-format.js';

const log = createLogger('ckks');

/** Serialised key set: the secret key goes to sites only, the public parameters to the coordinator. */
export interface CkksKeys {
  secretKey: Uint8Array;
  publicParams: Uint8Array;
}

/** What a payload's (checked) header says. */
export interface CkksPayloadInfo {
  kind: PayloadKind;
  vectorLength: number;
  ciphertexts: number;
  sites: number;
  bytes: number;
  /** Hex parameter fingerprint. */
  fingerprint: string;
  /** Hex key id. */
  keyId: string;
}

/** Message polynomials transformed per SEAL call: a ciphertext holds 16, one slot keeps it non-transparent. */
const NTT_BATCH = MAX_POLYS - 1;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * One set of CKKS parameters loaded into SEAL. Encrypts and decrypts vectors of any length with coefficient
 * encoding (value i of a ciphertext is coefficient i of its plaintext polynomial), which carries N values per
 * ciphertext and adds no FFT blow-up to the noise: we only ever add ciphertexts, so CKKS' slot encoding,
 * which exists to make multiplication slot-wise, buys nothing here.
 */
export class CkksContext {
  readonly parameters: CkksParameters;
  /** Hex SHA-256 of the canonical parameters. */
  readonly fingerprint: string;
  readonly modulus: Modulus;
  /** Bits per uploaded c0 coefficient after dropping the low ones. */
  readonly uploadBits: number;
  private readonly fingerprintBytes: Uint8Array;
  private readonly scale: number;
  private readonly compressedMax: bigint;
  private disposed = false;

  private constructor(
    private readonly seal: Seal,
    private readonly context: SEALContext,
    private readonly evaluator: Evaluator,
    private readonly zeroPlain: Plaintext,
    private readonly scratch: Ciphertext,
    private readonly scratchPlain: Plaintext,
    readonly layout: SealLayout,
    parameters: CkksParameters,
    modulus: bigint,
  ) {
    this.parameters = Object.freeze({ ...parameters });
    this.fingerprint = parametersFingerprint(parameters);
    this.fingerprintBytes = Buffer.from(this.fingerprint, 'hex');
    this.modulus = new Modulus(modulus);
    this.scale = 2 ** parameters.scaleBits;
    this.compressedMax = this.modulus.compressedMax(parameters.droppedBits);
    this.uploadBits = this.compressedMax.toString(2).length;
  }

  /** Builds a context (loading SEAL once per process). Refuses parameters below 128-bit security. */
  static async create(parameters: CkksParameters = DEFAULT_CKKS_PARAMETERS): Promise<CkksContext> {
    checkParameters(parameters);
    const { seal } = await loadSeal();
    const n = parameters.polyModulusDegree;
    const parms = sealCall(seal, 'creating encryption parameters', () => new seal.EncryptionParameters(seal.SchemeType.ckks));
    const owned: { delete(): void }[] = [];
    try {
      const maxBits = seal.CoeffModulus.MaxBitCount(n, seal.SecLevelType.tc128);
      if (parameters.coeffModulusBits > maxBits) {
        throw new CkksError(
          'INVALID_PARAMETERS',
          `invalid CKKS parameters: a ${parameters.coeffModulusBits}-bit modulus at N=${n} is below 128-bit security (at most ${maxBits} bits)`,
        );
      }
      const coeffModulus = sealCall(seal, 'choosing the prime', () => {
        parms.setPolyModulusDegree(n);
        return seal.CoeffModulus.Create(n, Int32Array.from([parameters.coeffModulusBits]));
      });
      let q: bigint;
      try {
        const prime = coeffModulus.get(0);
        if (prime === undefined) throw new CkksError('SEAL_ERROR', 'SEAL chose no prime');
        q = prime.value();
        prime.delete();
        parms.setCoeffModulus(coeffModulus);
      } finally {
        coeffModulus.delete();
      }
      assertSumFits(parameters, Number(q));
      const context = sealCall(seal, 'creating the SEAL context', () => new seal.SEALContext(parms, true, seal.SecLevelType.tc128));
      owned.push(context);
      if (!context.parametersSet()) throw new CkksError('INVALID_PARAMETERS', `SEAL refused the CKKS parameters at 128-bit security`);
      const evaluator = new seal.Evaluator(context);
      owned.push(evaluator);
      const zeroPlain = new seal.Plaintext();
      owned.push(zeroPlain);
      const encoder: CKKSEncoder = new seal.CKKSEncoder(context);
      try {
        // An all-zero plaintext at the right level and scale: we encrypt zero and add the message ourselves.
        sealCall(seal, 'encoding zero', () => encoder.encode(new Float64Array(n / 2), 2 ** parameters.scaleBits, zeroPlain));
      } finally {
        encoder.delete();
      }
      const scratch = new seal.Ciphertext();
      owned.push(scratch);
      const scratchPlain = new seal.Plaintext();
      owned.push(scratchPlain);
      // Learn SEAL's serialisation (parms_id, version, PRNG) from a real seeded ciphertext under a throwaway key.
      const layout = withTemporaryEncryptor(seal, context, undefined, (encryptor) => {
        const bytes = saveSeeded(seal, encryptor, zeroPlain);
        return SealLayout.fromSeededCiphertext(bytes, n);
      });
      log.debug({ parameters, q: q.toString() }, 'CKKS context ready');
      return new CkksContext(seal, context, evaluator, zeroPlain, scratch, scratchPlain, layout, parameters, q);
    } catch (error) {
      for (const o of owned) o.delete();
      throw error;
    } finally {
      parms.delete();
    }
  }

  /** Builds the context a key blob (secret key or public parameters) was made for. */
  static async fromKey(keyOrPublicParams: Uint8Array): Promise<CkksContext> {
    const header = readKeyHeader(keyOrPublicParams);
    const context = await CkksContext.create(header.params);
    try {
      context.checkKeyHeader(header, 'key');
    } catch (error) {
      context.dispose();
      throw error;
    }
    return context;
  }

  /** Values per ciphertext (N). */
  get valuesPerCiphertext(): number {
    return this.parameters.polyModulusDegree;
  }

  /** Makes a new key set. Keep secretKey at the sites; publicParams is all the coordinator gets. */
  generateKeys(): CkksKeys {
    this.assertLive();
    const seal = this.seal;
    const keyGenerator = sealCall(seal, 'key generation', () => new seal.KeyGenerator(this.context));
    let secret: SecretKey | undefined;
    try {
      secret = keyGenerator.secretKey();
      const sealKey = toBytes(secret.saveToArray(seal.ComprModeType.none));
      const header: KeyHeader = { params: this.parameters, modulus: this.modulus.value, keyId: keyIdOf(this.parameters, sealKey) };
      return { secretKey: writeSecretKey({ ...header, sealKey }), publicParams: writePublicParams(header) };
    } finally {
      secret?.delete();
      keyGenerator.delete();
    }
  }

  /** The coordinator's public parameters for a site's secret key (for re-issuing a coordinator kit). */
  publicParamsFor(secretKey: Uint8Array): Uint8Array {
    return writePublicParams(this.secretKeyParts(secretKey));
  }

  /**
   * Encrypts a vector (a site's update) with the secret key: symmetric, seeded encryption, so only c0 and a
   * 64-byte seed per ciphertext travel, and c0 is sent without its low droppedBits bits.
   */
  encryptVector(vector: Float32Array | Float64Array, secretKey: Uint8Array): Uint8Array {
    const { parts, out } = this.startUpdate(vector, secretKey);
    this.encryptRange(vector, 0, Math.ceil(vector.length / this.valuesPerCiphertext), parts.sealKey, out);
    return sealPayload(out);
  }

  /** Decrypts a payload (an aggregate, or a single site update) into the vector of sums it encrypts. */
  decryptVector(payload: Uint8Array, secretKey: Uint8Array): Float64Array {
    const { parts, header } = this.startDecryption(payload, secretKey);
    const out = new Float64Array(header.vectorLength);
    this.decryptRange(payload, header, parts.sealKey, 0, header.ciphertextCount, out);
    return out;
  }

  /**
   * @internal Checks the vector and key and allocates the payload with its header written; encryptRange
   * fills its ciphertexts (possibly on several threads), sealPayload finishes it.
   */
  startUpdate(
    vector: Float32Array | Float64Array,
    secretKey: Uint8Array,
    allocate?: (bytes: number) => Uint8Array,
  ): { parts: SecretKeyParts; out: Uint8Array } {
    this.assertLive();
    checkVector(vector, this.parameters.maxAbsValue);
    const parts = this.secretKeyParts(secretKey);
    const header: PayloadHeader = {
      kind: 'update',
      c0Bits: this.uploadBits,
      c1Bits: 0,
      vectorLength: vector.length,
      ciphertextCount: Math.ceil(vector.length / this.valuesPerCiphertext),
      siteCount: 1,
      fingerprint: this.fingerprintBytes,
      keyId: parts.keyId,
    };
    return { parts, out: startPayload(header, this.valuesPerCiphertext, allocate) };
  }

  /**
   * @internal Encrypts ciphertexts first..first+count-1 of a checked vector into their places in an update
   * payload (seed and packed c0), which must be zero there.
   */
  encryptRange(vector: Float32Array | Float64Array, first: number, count: number, sealKey: Uint8Array, out: Uint8Array): void {
    this.assertLive();
    const n = this.valuesPerCiphertext;
    const total = Math.ceil(vector.length / n);
    const seedsAt = PAYLOAD_HEADER_BYTES;
    const c0At = seedsAt + total * SEED_BYTES;
    const c0Bytes = packedBytes(n, this.uploadBits);
    withTemporaryEncryptor(this.seal, this.context, sealKey, (encryptor) => {
      const message = new Uint32Array(2 * n);
      for (let start = first; start < first + count; start += NTT_BATCH) {
        const batch = Math.min(NTT_BATCH, first + count - start);
        // Encryptions of zero: c0 = -(a*s + e) in NTT form, a regenerable from the seed.
        const zeros = new Uint32Array((batch + 1) * 2 * n);
        for (let j = 0; j < batch; j++) {
          const { c0, seed } = this.layout.readSeeded(saveSeeded(this.seal, encryptor, this.zeroPlain));
          zeros.set(c0, j * 2 * n);
          out.set(seed, seedsAt + (start + j) * SEED_BYTES);
        }
        zeros[batch * 2 * n] = 1; // keeps the batch ciphertext non-transparent for SEAL
        // c0 goes to coefficient form: there the message is added as plain integers, and rounding away low
        // bits adds a small error (in NTT form a small change is a large one after the inverse transform).
        const c0s = this.transform(zeros, batch + 1, 'from-ntt');
        for (let j = 0; j < batch; j++) {
          const firstValue = (start + j) * n;
          const c0 = c0s.subarray(j * 2 * n, (j + 1) * 2 * n);
          message.fill(0);
          this.modulus.encodeScaled(vector, firstValue, Math.min(n, vector.length - firstValue), this.scale, message);
          this.modulus.addInto(c0, message);
          this.modulus.compress(c0, this.parameters.droppedBits);
          packBits(c0, this.uploadBits, out, c0At + (start + j) * c0Bytes);
        }
      }
    });
  }

  /** @internal Checks key and payload before decryptRange. */
  startDecryption(payload: Uint8Array, secretKey: Uint8Array, verifyChecksum = true): { parts: SecretKeyParts; header: PayloadHeader } {
    this.assertLive();
    const parts = this.secretKeyParts(secretKey);
    return { parts, header: this.checkPayload(payload, parts.keyId, verifyChecksum) };
  }

  /** @internal Parses a secret key blob made for this context's parameters. */
  secretKeyParts(secretKey: Uint8Array): SecretKeyParts {
    const parts = readSecretKey(secretKey);
    this.checkKeyHeader(parts, 'secret key');
    return parts;
  }

  /** @internal Decrypts ciphertexts first..first+count-1 of a checked payload into their places in out. */
  decryptRange(payload: Uint8Array, header: PayloadHeader, sealKey: Uint8Array, first: number, count: number, out: Float64Array): void {
    this.assertLive();
    const seal = this.seal;
    const n = this.valuesPerCiphertext;
    // Coefficients are range-checked as they are read; nothing is stored, so no need to check first.
    const reader = new CiphertextReader(this, payload, header);
    const key = loadSecretKey(seal, this.context, sealKey);
    let decryptor: Decryptor | undefined;
    try {
      decryptor = sealCall(seal, 'creating a decryptor', () => new seal.Decryptor(this.context, key));
      const dec = decryptor;
      for (let start = first; start < first + count; start += NTT_BATCH) {
        const batch = Math.min(NTT_BATCH, first + count - start);
        // c0 travels in coefficient form; SEAL decrypts in NTT form.
        const c0s = new Uint32Array((batch + 1) * 2 * n);
        for (let j = 0; j < batch; j++) c0s.set(reader.c0(start + j), j * 2 * n);
        c0s[batch * 2 * n] = 1; // keeps the batch ciphertext non-transparent for SEAL
        const c0sNtt = this.transform(c0s, batch + 1, 'to-ntt');
        const plains = new Uint32Array((batch + 1) * 2 * n);
        for (let j = 0; j < batch; j++) {
          const bytes = reader.sealCiphertext(start + j, c0sNtt.subarray(j * 2 * n, (j + 1) * 2 * n));
          sealCall(seal, 'decryption', () => {
            this.scratch.loadFromArray(this.context, bytes);
            dec.decrypt(this.scratch, this.scratchPlain);
          });
          plains.set(this.layout.readPlaintext(toBytes(this.scratchPlain.saveToArray(seal.ComprModeType.none))), j * 2 * n);
        }
        plains[batch * 2 * n] = 1;
        const coeffs = this.transform(plains, batch + 1, 'from-ntt');
        for (let j = 0; j < batch; j++) {
          const firstValue = (start + j) * n;
          const values = Math.min(n, header.vectorLength - firstValue);
          this.modulus.decodeCentered(coeffs.subarray(j * 2 * n), values, this.scale, out, firstValue);
        }
      }
    } finally {
      decryptor?.delete();
      key.delete();
    }
  }

  /** Bytes of one site's encrypted update of `vectorLength` values: known before a byte of it arrives. */
  updatePayloadBytes(vectorLength: number): number {
    return payloadBytes(
      { kind: 'update', c0Bits: this.uploadBits, c1Bits: 0, vectorLength, ciphertextCount: Math.ceil(vectorLength / this.valuesPerCiphertext), siteCount: 1 },
      this.valuesPerCiphertext,
    );
  }

  /** Checks a payload's framing and header and says what it holds (without decrypting). */
  inspectPayload(payload: Uint8Array): CkksPayloadInfo {
    this.assertLive();
    const header = this.checkPayload(payload);
    return {
      kind: header.kind,
      vectorLength: header.vectorLength,
      ciphertexts: header.ciphertextCount,
      sites: header.siteCount,
      bytes: payload.length,
      fingerprint: hex(header.fingerprint),
      keyId: hex(header.keyId),
    };
  }

  /**
   * The seeds of a site update's ciphertexts, after checking its framing and (when given) key; its checksum and
   * coefficients are the sum's to check. Refused (SEED_REUSED) when two of its ciphertexts share a seed. Views into
   * `payload`, valid while it is. A coordinator keeps digests of them to refuse a seed that comes again.
   */
  updateSeeds(payload: Uint8Array, keyId?: Uint8Array): Uint8Array[] {
    this.assertLive();
    const header = this.checkPayload(payload, keyId, false);
    if (header.kind !== 'update') throw new CkksError('CORRUPT', 'a site uploads one update, not an aggregate');
    return new CiphertextReader(this, payload, header).distinctSeeds();
  }

  /** An accumulator for the coordinator, bound to the key set named in publicParams. */
  createAccumulator(publicParams: Uint8Array): CiphertextAccumulator {
    return new CiphertextAccumulator(this, publicParams);
  }

  /** Frees SEAL's objects; the context cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const o of [this.scratchPlain, this.scratch, this.zeroPlain, this.evaluator, this.context]) o.delete();
  }

  /** @internal Checks framing, parameters and (when given) key of a payload. */
  checkPayload(payload: Uint8Array, keyId?: Uint8Array, verifyChecksum = true): PayloadHeader {
    const header = readPayloadHeader(payload, this.valuesPerCiphertext, this.fingerprintBytes, verifyChecksum);
    if (keyId !== undefined && !Buffer.from(header.keyId).equals(Buffer.from(keyId))) {
      throw new CkksError('KEY_MISMATCH', `CKKS payload was encrypted under key ${hex(header.keyId)}, not this consortium's key ${hex(keyId)}`);
    }
    const expectedC0 = header.kind === 'update' ? this.uploadBits : this.modulus.bits;
    const expectedC1 = header.kind === 'update' ? 0 : this.modulus.bits;
    if (header.c0Bits !== expectedC0 || header.c1Bits !== expectedC1) {
      throw new CkksError('CORRUPT', `CKKS payload packs coefficients in ${header.c0Bits}/${header.c1Bits} bits, expected ${expectedC0}/${expectedC1}`);
    }
    return header;
  }

  /** @internal */
  checkKeyHeader(header: KeyHeader, what: string): void {
    if (parametersFingerprint(header.params) !== this.fingerprint) {
      throw new CkksError('PARAMETER_MISMATCH', `the ${what} was made for other CKKS parameters than this context's`);
    }
    if (header.modulus !== this.modulus.value) {
      throw new CkksError('PARAMETER_MISMATCH', `the ${what} was made with prime ${header.modulus}, this SEAL build chose ${this.modulus.value}`);
    }
  }

  /** @internal The SEAL handles an accumulator needs. */
  get internals(): { seal: Seal; context: SEALContext; scratch: Ciphertext; scale: number; compressedMax: bigint } {
    this.assertLive();
    return { seal: this.seal, context: this.context, scratch: this.scratch, scale: this.scale, compressedMax: this.compressedMax };
  }

  /** Runs SEAL's negacyclic NTT (or its inverse) on up to 16 polynomials at once via a scratch ciphertext. */
  private transform(polys: Uint32Array, size: number, direction: 'to-ntt' | 'from-ntt'): Uint32Array {
    const seal = this.seal;
    const bytes = this.layout.writeCiphertext(polys, size, direction === 'from-ntt', this.scale);
    const saved = sealCall(seal, 'NTT', () => {
      this.scratch.loadFromArray(this.context, bytes);
      if (direction === 'to-ntt') this.evaluator.cipherTransformToNttInplace(this.scratch);
      else this.evaluator.cipherTransformFromNttInplace(this.scratch);
      return toBytes(this.scratch.saveToArray(seal.ComprModeType.none));
    });
    return this.layout.readCiphertext(saved, size);
  }

  private assertLive(): void {
    if (this.disposed) throw new CkksError('SEAL_ERROR', 'this CKKS context has been disposed');
  }
}

function checkVector(vector: Float32Array | Float64Array, maxAbsValue: number): void {
  if (!(vector instanceof Float32Array || vector instanceof Float64Array)) {
    throw new CkksError('VALUE_OUT_OF_RANGE', 'the vector to encrypt must be a Float32Array or Float64Array');
  }
  if (vector.length < 1 || vector.length > 0xffff_ffff) throw new CkksError('VALUE_OUT_OF_RANGE', `cannot encrypt a vector of ${vector.length} values`);
  for (let i = 0; i < vector.length; i++) {
    const v = vector[i] as number;
    if (!(Math.abs(v) <= maxAbsValue)) {
      throw new CkksError(
        'VALUE_OUT_OF_RANGE',
        `value ${i} of the vector is ${v}: the CKKS parameters hold only finite values within ±${maxAbsValue} ` +
          `(larger ones could wrap around the modulus in the sum)`,
      );
    }
  }
}

/** node-seal returns its arrays as `any`; they are Uint8Arrays. */
function toBytes(value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new CkksError('SEAL_ERROR', 'SEAL returned no byte array');
  return value;
}

function loadSecretKey(seal: Seal, context: SEALContext, sealKey: Uint8Array): SecretKey {
  const key = new seal.SecretKey();
  try {
    sealCall(seal, 'loading the secret key', () => key.loadFromArray(context, sealKey));
  } catch (error) {
    key.delete();
    throw error;
  }
  return key;
}

/** Saves a fresh seeded symmetric encryption of `plain` (only c0 and the seed are serialised). */
function saveSeeded(seal: Seal, encryptor: Encryptor, plain: Plaintext): Uint8Array {
  const serializable = sealCall(seal, 'encryption', () => encryptor.encryptSymmetricSerializable(plain));
  try {
    return toBytes(serializable.saveToArray(seal.ComprModeType.none));
  } finally {
    serializable.delete();
  }
}

/**
 * Runs fn with a symmetric Encryptor for the given SEAL secret key (or a throwaway key), deleting every SEAL
 * object afterwards. node-seal's Encryptor always wants a public key too, so one is derived and dropped.
 */
function withTemporaryEncryptor<T>(seal: Seal, context: SEALContext, sealKey: Uint8Array | undefined, fn: (e: Encryptor) => T): T {
  const owned: { delete(): void }[] = [];
  try {
    let keyGenerator;
    let secret: SecretKey;
    if (sealKey === undefined) {
      keyGenerator = new seal.KeyGenerator(context);
      owned.push(keyGenerator);
      secret = keyGenerator.secretKey();
      owned.push(secret);
    } else {
      secret = loadSecretKey(seal, context, sealKey);
      owned.push(secret);
      keyGenerator = sealCall(seal, 'deriving a key generator', () => new seal.KeyGenerator(context, secret));
      owned.push(keyGenerator);
    }
    const generator = keyGenerator;
    const publicKey = sealCall(seal, 'deriving a public key', () => generator.createPublicKey());
    owned.push(publicKey);
    const encryptor = sealCall(seal, 'creating an encryptor', () => new seal.Encryptor(context, publicKey, secret));
    owned.push(encryptor);
    return fn(encryptor);
  } finally {
    for (const o of owned.reverse()) o.delete();
  }
}
