import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MULTIPARTY_REQUEST, deriveMultipartyParameters } from './params.js';
import {
  ciphertextCount,
  decodeCiphertexts,
  decodePolys,
  decryptVector,
  encodeCiphertexts,
  encodePolys,
  encryptVector,
  MultipartyPayloadError,
  payloadBytes,
  readPayloadHeader,
  shareForSum,
  sumUpdates,
  switchedModel,
  type PayloadErrorCode,
} from './payload.js';
import { collectivePublicKey, commonPolynomial, keyShare, ringOf, type Ciphertext } from './protocol.js';
import { sampleTernary, SeededStream } from './ring.js';

const SITES = 3;
const stream = (label: string): SeededStream => new SeededStream(randomBytes(32), label);

const maxDistance = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
};

const refusal = (run: () => unknown): { code: PayloadErrorCode; message: string } => {
  try {
    run();
  } catch (error) {
    if (error instanceof MultipartyPayloadError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected a MultipartyPayloadError');
};

describe('multiparty payloads: vectors over many ciphertexts, as they travel', () => {
  const params = deriveMultipartyParameters();
  const ring = ringOf(params);
  // Two and a half ciphertexts: the last one partly used.
  const valueCount = ring.n * 2.5;
  const header = { epoch: 1, valueCount };
  let secrets: Uint32Array[];
  let modelKey: Uint32Array;
  let values: Float64Array[];
  let plainSum: Float64Array;
  let updates: Uint8Array[];
  let updateCts: Ciphertext[][];
  let sum: { c0: Uint8Array; c1: Uint8Array; count: number };
  let shares: Uint8Array[];
  let model: Uint8Array;

  beforeAll(() => {
    const a = commonPolynomial(ring, new Uint8Array(32).fill(5), { studyId: 'study-1', epoch: 1 });
    const keys = Array.from({ length: SITES }, () => keyShare(ring, a, stream('key-share')));
    secrets = keys.map((k) => k.secret);
    const p = collectivePublicKey(ring, keys.map((k) => k.publicShare));
    modelKey = sampleTernary(ring, stream('model-key'));
    values = Array.from({ length: SITES }, (_, site) => Float64Array.from({ length: valueCount }, (_, i) => Math.sin(i * (site + 1)) * (40 + 10 * site)));
    plainSum = Float64Array.from({ length: valueCount }, (_, i) => values.reduce((s, v) => s + (v[i] as number), 0));
    updateCts = values.map((v) => encryptVector(ring, params, { p, a }, v, stream('encrypt')));
    updates = updateCts.map((cts) => encodeCiphertexts(ring, params, 'update', header, cts));
    sum = sumUpdates(ring, params, header, updates);
    // Site 0 folds the model key in; every site sends its share of the summed c1.
    shares = secrets.map((s, i) => shareForSum(ring, params, s, i === 0 ? modelKey : null, sum.c1, stream('switch')));
    model = switchedModel(ring, params, header, sum.c0, sum.c1, shares);
  }, 120_000);

  it('decrypts the switched model under the model key to the plain sum', () => {
    expect(sum.count).toBe(SITES);
    const { header: read, ciphertexts } = decodeCiphertexts(ring, params, 'model', model, header);
    expect(read).toEqual({ kind: 'model', ...header });
    expect(ciphertexts).toHaveLength(3);
    const decrypted = decryptVector(ring, params, ciphertexts, modelKey, valueCount);
    expect(decrypted).toHaveLength(valueCount);
    const error = maxDistance(decrypted, plainSum);
    // FedAvg divides by the total weight, at least the number of sites: the accuracy is for that quotient.
    expect(error / SITES).toBeLessThan(1e-6);
    expect(error).toBeLessThanOrEqual(2 ** params.bounds.totalErrorLog2 / 2 ** params.scaleBits);
    // One site's secret alone reads noise.
    expect(maxDistance(decryptVector(ring, params, ciphertexts, secrets[0]!, valueCount), plainSum)).toBeGreaterThan(1e3);
  });

  it('round-trips an update and sizes every kind as payloadBytes says', () => {
    const decoded = decodeCiphertexts(ring, params, 'update', updates[1]!, header).ciphertexts;
    decoded.forEach((ct, k) => {
      expect(ct.c1).toEqual(updateCts[1]![k]!.c1);
      if (k < 2) expect(ct.c0).toEqual(updateCts[1]![k]!.c0);
    });
    expect(ciphertextCount(ring, valueCount)).toBe(3);
    expect(updates[0]).toHaveLength(payloadBytes(ring, params, 'update', valueCount));
    expect(sum.c0).toHaveLength(payloadBytes(ring, params, 'sum-c0', valueCount));
    expect(sum.c1).toHaveLength(payloadBytes(ring, params, 'sum-c1', valueCount));
    expect(shares[0]).toHaveLength(payloadBytes(ring, params, 'share', valueCount));
    expect(model).toHaveLength(payloadBytes(ring, params, 'model', valueCount));
    expect(readPayloadHeader(params, shares[2]!)).toEqual({ kind: 'share', ...header });
    expect(decodePolys(ring, params, 'share', shares[2]!).polys).toHaveLength(3);
  });

  it('refuses a truncated, lengthened, foreign or mislabelled blob with its code', () => {
    const update = updates[0]!;
    expect(refusal(() => decodeCiphertexts(ring, params, 'update', update.subarray(0, 20)))).toMatchObject({ code: 'TRUNCATED' });
    const expected = payloadBytes(ring, params, 'update', valueCount);
    expect(refusal(() => decodeCiphertexts(ring, params, 'update', update.subarray(0, update.length - 1)))).toEqual({
      code: 'TRUNCATED',
      message: `an update payload of ${valueCount} values is ${expected} bytes, got ${expected - 1}`,
    });
    const longer = new Uint8Array(update.length + 1);
    longer.set(update);
    expect(refusal(() => decodeCiphertexts(ring, params, 'update', longer))).toMatchObject({ code: 'WRONG_LENGTH' });
    expect(refusal(() => decodeCiphertexts(ring, params, 'update', update, { valueCount: valueCount + 1 }))).toMatchObject({ code: 'WRONG_LENGTH' });
    const magic = update.slice();
    magic[0] = 0x47;
    expect(refusal(() => decodeCiphertexts(ring, params, 'update', magic))).toMatchObject({ code: 'BAD_MAGIC' });
    expect(refusal(() => decodeCiphertexts(ring, params, 'model', update))).toMatchObject({ code: 'WRONG_KIND', message: expect.stringMatching(/expected a model payload, got an update payload/) as unknown });
    expect(refusal(() => decodePolys(ring, params, 'sum-c0', sum.c1))).toMatchObject({ code: 'WRONG_KIND' });
    const unknownKind = update.slice();
    unknownKind[4] = 9;
    expect(refusal(() => readPayloadHeader(params, unknownKind))).toMatchObject({ code: 'WRONG_KIND' });
    expect(refusal(() => decodeCiphertexts(ring, params, 'update', update, { epoch: 2 }))).toMatchObject({ code: 'WRONG_EPOCH', message: expect.stringMatching(/epoch 1, not 2/) as unknown });
    const other = deriveMultipartyParameters({ ...DEFAULT_MULTIPARTY_REQUEST, maxSites: 50 });
    expect(refusal(() => readPayloadHeader(other, update))).toMatchObject({ code: 'WRONG_PARAMETERS' });
    // The coordinator's sum refuses the bad update and says which.
    expect(refusal(() => sumUpdates(ring, params, header, [update, magic]))).toMatchObject({ code: 'BAD_MAGIC', message: expect.stringMatching(/^update 1: /) as unknown });
    expect(refusal(() => sumUpdates(ring, params, { epoch: 2, valueCount }, updates))).toMatchObject({ code: 'WRONG_EPOCH' });
    expect(refusal(() => switchedModel(ring, params, header, sum.c0, sum.c1, [shares[0]!, sum.c1]))).toMatchObject({ code: 'WRONG_KIND', message: expect.stringMatching(/^share 1: /) as unknown });
  });

  it('refuses a corrupt residue or non-zero padding, saying where', () => {
    const corrupt = sum.c1.slice();
    // Ciphertext 1, prime 0, residue 0: 26 one bits, above the 26-bit prime.
    const at = 48 + (sum.c1.length - 48) / 3;
    corrupt.set([0xff, 0xff, 0xff], at);
    corrupt[at + 3] = (corrupt[at + 3] as number) | 0x03;
    expect(refusal(() => decodePolys(ring, params, 'sum-c1', corrupt))).toMatchObject({
      code: 'CORRUPT',
      message: expect.stringMatching(/^ciphertext 1: residue 0 of prime 0 is \d+, not below \d+/) as unknown,
    });
    expect(refusal(() => shareForSum(ring, params, secrets[0]!, null, corrupt, stream('s')))).toMatchObject({ code: 'CORRUPT' });
    // One value past a full ciphertext: its 44-bit coefficient leaves 4 pad bits.
    const odd = encodePolys(ring, params, 'share', { epoch: 1, valueCount: ring.n + 1 }, [ring.zero(), ring.zero()]);
    expect(decodePolys(ring, params, 'share', odd).polys[1]).toEqual(ring.zero());
    const padded = odd.slice();
    padded[padded.length - 1] = (padded[padded.length - 1] as number) | 0x80;
    expect(refusal(() => decodePolys(ring, params, 'share', padded))).toMatchObject({ code: 'CORRUPT', message: expect.stringMatching(/^ciphertext 1: the padding bits/) as unknown });
  });
});
