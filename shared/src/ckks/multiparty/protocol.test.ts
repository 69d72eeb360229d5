import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { deriveMultipartyParameters, type MultipartyParameters } from './params.js';
import {
  addCiphertexts,
  applyKeySwitch,
  collectivePublicKey,
  commonPolynomial,
  decrypt,
  encrypt,
  keyShare,
  keySwitchShare,
  ringOf,
  type Ciphertext,
} from './protocol.js';
import { sampleTernary, SeededStream, type RnsRing } from './ring.js';

const SITES = 3;
const COUNT = 4096;

function updateOf(site: number): Float64Array {
  // Weighted updates as FedAvg sends them: |update| <= 1 times a weight (here 40..60 samples).
  const random = new SeededStream(new Uint8Array(32).fill(site + 1), 'test-update');
  const bytes = random.bytes(COUNT * 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const weight = 40 + 10 * site;
  return Float64Array.from({ length: COUNT }, (_, i) => ((view.getUint32(4 * i, true) / 2 ** 32) * 2 - 1) * weight);
}

const maxDistance = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
};

describe('multiparty CKKS: keys no single party holds', () => {
  let params: MultipartyParameters;
  let ring: RnsRing;
  let a: Uint32Array;
  let secrets: Uint32Array[];
  let publicShares: Uint32Array[];
  let p: Uint32Array;
  let modelKey: Uint32Array;
  let updates: Float64Array[];
  let ciphertexts: Ciphertext[];
  let sum: Ciphertext;
  let switched: Ciphertext;

  beforeAll(() => {
    params = deriveMultipartyParameters();
    ring = ringOf(params);
    const consortiumSeed = new Uint8Array(32).fill(7);
    a = commonPolynomial(ring, consortiumSeed, { studyId: 'study-1', epoch: 1 });
    const shares = Array.from({ length: SITES }, () => keyShare(ring, a, new SeededStream(randomBytes(32), 'key-share')));
    secrets = shares.map((s) => s.secret);
    publicShares = shares.map((s) => s.publicShare);
    p = collectivePublicKey(ring, publicShares);
    modelKey = sampleTernary(ring, new SeededStream(randomBytes(32), 'model-key'));
    updates = Array.from({ length: SITES }, (_, i) => updateOf(i));
    ciphertexts = updates.map((u) => encrypt(ring, params, { p, a }, u, new SeededStream(randomBytes(32), 'encrypt')));
    sum = addCiphertexts(ring, ciphertexts);
    // Site 0 is designated to fold the model key in; every site smudges its share.
    const shares2 = secrets.map((s, i) => keySwitchShare(ring, params, s, i === 0 ? modelKey : null, sum.c1, new SeededStream(randomBytes(32), 'switch')));
    switched = applyKeySwitch(ring, sum, shares2);
  }, 120_000);

  it('every party expands the same common polynomial from the consortium seed, and another epoch or study gets another', () => {
    const seed = new Uint8Array(32).fill(7);
    expect(commonPolynomial(ring, seed, { studyId: 'study-1', epoch: 1 })).toEqual(a);
    expect(commonPolynomial(ring, seed, { studyId: 'study-1', epoch: 2 })).not.toEqual(a);
    expect(commonPolynomial(ring, seed, { studyId: 'study-2', epoch: 1 })).not.toEqual(a);
  });

  it('decrypts the switched sum under the model key to the plaintext sum, FedAvg within 1e-6', () => {
    const decrypted = decrypt(ring, params, switched, modelKey);
    const plain = Float64Array.from({ length: COUNT }, (_, i) => updates.reduce((s, u) => s + (u[i] as number), 0));
    const error = maxDistance(decrypted, plain);
    // FedAvg divides by the total weight (150 samples here); the derivation bounds it by W >= sites.
    expect(error / SITES).toBeLessThan(1e-6);
    // Before the switch the sum is a ciphertext under s = sum s_i, which no party holds: only all of them together.
    const everyone = secrets.reduce((acc, s) => ring.add(acc, s), ring.zero());
    expect(maxDistance(decrypt(ring, params, sum, everyone), plain) / SITES).toBeLessThan(1e-6);
    expect(error).toBeLessThanOrEqual(2 ** params.bounds.totalErrorLog2 / 2 ** params.scaleBits);
  });

  it('gives the coordinator nothing: the sum under the model key before the switch, or under any one share, is noise', () => {
    const plain = Float64Array.from({ length: COUNT }, (_, i) => updates.reduce((s, u) => s + (u[i] as number), 0));
    expect(maxDistance(decrypt(ring, params, sum, modelKey), plain)).toBeGreaterThan(1e3);
    expect(maxDistance(decrypt(ring, params, sum, secrets[0]!), plain)).toBeGreaterThan(1e3);
  });

  it('gives the coordinator with one site\'s key share and the model key no other site\'s update', () => {
    // What collusion holds: every ciphertext, every public and switching share, site 0's secret and the model key.
    const colluding = [secrets[0]!, modelKey, ring.add(secrets[0]!, modelKey)];
    for (const key of colluding) {
      for (const victim of [1, 2]) {
        const attempt = decrypt(ring, params, ciphertexts[victim]!, key);
        // Far from the update (|values| <= 60): the result is noise of the order of q / Delta.
        expect(maxDistance(attempt, updates[victim]!)).toBeGreaterThan(1e3);
      }
    }
  });
});
