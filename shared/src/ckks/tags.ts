import { createHmac } from 'node:crypto';
import { canonicalJson } from '../study/canonical-json.js';

/**
 * Contribution tags: the last TAGS_PER_CIPHERTEXT values of every ciphertext of an encrypted update hold
 * pseudorandom numbers that only key holders can compute, one pair per (study, round, site, ciphertext). Summed,
 * every ciphertext of an aggregate must carry exactly the sum of the named contributors' tags for that ciphertext.
 *
 * Why: the coordinator can add, scale and mix ciphertexts, and add any plaintext to them, without a key. Plain
 * contribution slots (which it can shift by adding a plaintext, or take from an honest sum while the rest of the
 * ciphertexts come from one site) prove nothing against that. A tag it cannot compute binds every ciphertext to
 * the set of sites in it: publishing one hospital's update (or one hospital counted twice, or a chunk from another
 * round) as a consortium's sum would need other sites' tags it does not know. Forgery succeeds with probability
 * about 1e-12 per ciphertext (two 48-bit tags checked to 1e-6).
 */
export const TAGS_PER_CIPHERTEXT = 2;
/** Decrypted tag sums must match within this; CKKS's error on a sum is below 1e-8 (see PARAMETERS.md). */
const TAG_TOLERANCE = 1e-6;

export interface TagScope {
  studyId: string;
  round: number;
}

/** The key tags are made with, derived from the consortium's CKKS secret key (which every site holds). */
export function contributionTagKey(secretKey: Uint8Array): Buffer {
  return createHmac('sha256', Buffer.from(secretKey)).update('federa/contribution-tags/v1').digest();
}

/** Values per ciphertext left for the update once the tags have their places. */
export function payloadPerCiphertext(valuesPerCiphertext: number): number {
  return valuesPerCiphertext - TAGS_PER_CIPHERTEXT;
}

/** Length of the tagged vector (whole ciphertexts) that carries `payloadLength` update values. */
export function taggedLength(payloadLength: number, valuesPerCiphertext: number): number {
  return Math.ceil(payloadLength / payloadPerCiphertext(valuesPerCiphertext)) * valuesPerCiphertext;
}

/** Tag `slot` of ciphertext `ciphertext` of `siteId`'s update: a number in [-1, 1). */
export function contributionTag(key: Uint8Array, scope: TagScope, siteId: string, ciphertext: number, slot: number): number {
  const mac = createHmac('sha256', key).update(canonicalJson({ studyId: scope.studyId, round: scope.round, siteId, ciphertext, slot })).digest();
  return (mac.readUIntBE(0, 6) / 2 ** 48) * 2 - 1;
}

/** The update laid out per ciphertext (payload, then the site's tags), ready for encryption. */
export function tagVector(payload: ArrayLike<number>, valuesPerCiphertext: number, key: Uint8Array, scope: TagScope, siteId: string): Float64Array {
  const per = payloadPerCiphertext(valuesPerCiphertext);
  const ciphertexts = Math.ceil(payload.length / per);
  const out = new Float64Array(ciphertexts * valuesPerCiphertext);
  for (let c = 0; c < ciphertexts; c++) {
    const from = c * per;
    for (let i = 0; i < per && from + i < payload.length; i++) out[c * valuesPerCiphertext + i] = payload[from + i] as number;
    for (let t = 0; t < TAGS_PER_CIPHERTEXT; t++) out[c * valuesPerCiphertext + per + t] = contributionTag(key, scope, siteId, c, t);
  }
  return out;
}

/** The update values of a decrypted (tagged) vector, without the tags and padding. */
export function untagVector(tagged: Float64Array, payloadLength: number, valuesPerCiphertext: number): Float64Array {
  const per = payloadPerCiphertext(valuesPerCiphertext);
  const out = new Float64Array(payloadLength);
  for (let c = 0; c * per < payloadLength; c++) {
    out.set(tagged.subarray(c * valuesPerCiphertext, c * valuesPerCiphertext + Math.min(per, payloadLength - c * per)), c * per);
  }
  return out;
}

/**
 * Checks every ciphertext of a decrypted aggregate against the tags of the sites it is said to sum. Returns what is
 * wrong (empty when every ciphertext holds exactly those sites' updates for this study and round, each once).
 */
export function tagProblems(
  tagged: Float64Array,
  valuesPerCiphertext: number,
  key: Uint8Array,
  scope: TagScope,
  contributors: readonly string[],
): string[] {
  if (tagged.length % valuesPerCiphertext !== 0) return [`the aggregate holds ${tagged.length} values, not whole ciphertexts of ${valuesPerCiphertext}`];
  const per = payloadPerCiphertext(valuesPerCiphertext);
  const problems: string[] = [];
  for (let c = 0; c * valuesPerCiphertext < tagged.length; c++) {
    for (let t = 0; t < TAGS_PER_CIPHERTEXT; t++) {
      let expected = 0;
      for (const site of contributors) expected += contributionTag(key, scope, site, c, t);
      const actual = tagged[c * valuesPerCiphertext + per + t] as number;
      if (Math.abs(actual - expected) > TAG_TOLERANCE) {
        problems.push(`ciphertext ${c} is not the sum of [${contributors.join(', ')}]'s updates for round ${scope.round} (tag ${t} off by ${(actual - expected).toExponential(2)})`);
        break;
      }
    }
    if (problems.length >= 3) break;
  }
  return problems;
}
