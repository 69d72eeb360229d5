import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  collectivePublicKey,
  commonPolynomial,
  consortiumMultipartyFingerprint,
  decodePolys,
  deriveMultipartyParameters,
  encodeCiphertexts,
  encodePolys,
  encryptVector,
  federation,
  keyShare,
  ringOf,
  SeededStream,
  sha256Hex,
  sumUpdates,
  updateC1Part,
  type ContributionStatement,
} from '@federa/shared';
import { PolicyRefusalError } from '../policy/index.js';
import { checkSumOfContributions, SumVerifier, type SumCheckInput } from './sum-verification.js';

const STUDY = '00000000-0000-4000-8000-000000000002';
const SITES = ['site-a', 'site-b', 'site-c'] as const;
const EPOCH = 2;

describe('a member checks the c1 it is asked to switch is the sum of the listed updates\' c1 parts', () => {
  const params = deriveMultipartyParameters();
  const ring = ringOf(params);
  // Two ciphertexts and a bit: the last one's c0 is cut short in the updates.
  const header = { epoch: EPOCH, valueCount: 2 * ring.n + 3 };
  let updates: Record<string, Uint8Array>;
  let parts: Record<string, Uint8Array>;
  let statements: ContributionStatement[];
  let honest: Uint8Array;
  /** What the coordinator stub serves as each site's c1 part (the real one unless a test swaps it), and what was asked. */
  let served: Record<string, Uint8Array>;
  let asked: string[];
  let inFlight: number;
  let mostInFlight: number;

  const statementOf = (siteId: string, c1Sha256: string): ContributionStatement => ({
    kind: 'federa.multiparty.contribution',
    epoch: EPOCH,
    studyId: STUDY,
    round: 1,
    siteId,
    parameters: consortiumMultipartyFingerprint(),
    updateSha256: sha256Hex(updates[siteId]!),
    c1Sha256,
  });

  const download = async (siteId: string, bytes: number): Promise<Uint8Array> => {
    asked.push(siteId);
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    await new Promise((resolve) => setTimeout(resolve, 5));
    inFlight--;
    const part = served[siteId];
    if (!part || part.byteLength !== bytes) throw new Error(`no part of ${bytes} bytes for ${siteId}`);
    return part;
  };

  const check = (sum: Uint8Array, listed: readonly ContributionStatement[] = statements) => {
    asked = [];
    inFlight = 0;
    mostInFlight = 0;
    const input: SumCheckInput = { ring, params, sum, contributions: listed, download };
    return checkSumOfContributions(input);
  };

  beforeAll(() => {
    const a = commonPolynomial(ring, randomBytes(32), { studyId: STUDY, epoch: EPOCH });
    const key = { p: collectivePublicKey(ring, SITES.map(() => keyShare(ring, a, new SeededStream(randomBytes(32), 'key-share')).publicShare)), a };
    updates = {};
    parts = {};
    for (const siteId of SITES) {
      const values = Float64Array.from({ length: header.valueCount }, () => Math.random() - 0.5);
      updates[siteId] = encodeCiphertexts(ring, params, 'update', header, encryptVector(ring, params, key, values, new SeededStream(randomBytes(32), 'encrypt')));
      parts[siteId] = updateC1Part(ring, params, updates[siteId]);
    }
    statements = SITES.map((s) => statementOf(s, sha256Hex(parts[s]!)));
    // What an honest coordinator sends: the c1 of sumUpdates over the same updates.
    honest = sumUpdates(ring, params, header, SITES.map((s) => updates[s]!)).c1;
    served = { ...parts };
  });

  it('accepts the coordinator\'s honest sum, downloading each listed part once and one at a time', async () => {
    served = { ...parts };
    expect(await check(honest)).toEqual({ ok: true });
    expect(asked).toEqual([...SITES]);
    expect(mostInFlight).toBe(1);
  });

  it('refuses (a) a "sum" that is one listed update\'s c1 alone', async () => {
    served = { ...parts };
    const alone = encodePolys(ring, params, 'sum-c1', header, decodePolys(ring, params, 'update-c1', parts['site-b']!).polys);
    expect(await check(alone)).toEqual({
      ok: false,
      reason: 'the c1 sent is not the sum of the c1 parts of the 3 listed updates (site-a, site-b, site-c): 3 of its 3 ciphertexts differ (0, 1, 2)',
    });
  });

  it('refuses (b) a c1 part whose bytes are not the ones its site signed, and stops downloading there', async () => {
    // site-b's c1 part swapped for site-c's: well formed, but not what site-b signed.
    served = { ...parts, 'site-b': parts['site-c']! };
    expect(await check(honest)).toEqual({
      ok: false,
      reason: `the c1 part served for site-b's update hashes to ${sha256Hex(parts['site-c']!)}, not the c1Sha256 ${sha256Hex(parts['site-b']!)} the site signed`,
    });
    expect(asked).toEqual(['site-a', 'site-b']);
    // A part that hashes as signed but does not fit this sum (a site that signed a part of another epoch).
    const otherEpoch = parts['site-c']!.slice();
    otherEpoch[40] = EPOCH + 1;
    served = { ...parts, 'site-c': otherEpoch };
    const listed = [statements[0]!, statements[1]!, statementOf('site-c', sha256Hex(otherEpoch))];
    expect(await check(honest, listed)).toEqual({ ok: false, reason: `the c1 part of site-c's update does not fit the sum: the update-c1 payload is for epoch ${EPOCH + 1}, not ${EPOCH}` });
  });

  it('refuses (c) a sum missing one of the listed updates', async () => {
    served = { ...parts };
    const short = sumUpdates(ring, params, header, [updates['site-a']!, updates['site-c']!]).c1;
    expect(await check(short)).toMatchObject({ ok: false, reason: expect.stringMatching(/^the c1 sent is not the sum of the c1 parts of the 3 listed updates .*: 3 of its 3 ciphertexts differ/) as unknown });
    // Listing only the two summed makes it a sum of what is listed.
    expect(await check(short, [statements[0]!, statements[2]!])).toEqual({ ok: true });
  });

  it('refuses a sum that is not a sum-c1 blob, and a list of no contributions', async () => {
    expect(await check(parts['site-a']!)).toEqual({ ok: false, reason: 'the sum is not a sum-c1 blob: expected a sum-c1 payload, got an update-c1 payload' });
    expect(await check(honest, [])).toEqual({ ok: false, reason: 'the sum lists no contribution' });
    expect(asked).toEqual([]);
  });

  describe('SumVerifier: policy.verifySum', () => {
    const retry = { call: <T>(_what: string, fn: () => Promise<T>): Promise<T> => fn() };
    const clientFor = (calls: string[]) => ({
      downloadUpdateC1: (studyId: string, round: number, siteId: string, bytes: number): Promise<Uint8Array> => {
        calls.push(`${studyId}/${round}/${siteId}`);
        return download(siteId, bytes);
      },
    });
    const task = { studyId: STUDY, round: 1 };

    it('refuses a sum that does not check out with SHARE_REQUEST_INVALID, naming what differed', async () => {
      const calls: string[] = [];
      served = { ...parts };
      asked = [];
      const verifier = new SumVerifier(clientFor(calls), retry, { verifySum: true });
      await verifier.verify(task, { ring, params, sum: honest, contributions: statements });
      expect(calls).toEqual(SITES.map((s) => `${STUDY}/1/${s}`));
      const alone = encodePolys(ring, params, 'sum-c1', header, decodePolys(ring, params, 'update-c1', parts['site-a']!).polys);
      const error = await verifier.verify(task, { ring, params, sum: alone, contributions: statements }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PolicyRefusalError);
      expect((error as PolicyRefusalError).refusal.reason).toBe(federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
      expect((error as PolicyRefusalError).message).toMatch(new RegExp(`^this site will not help decrypt round 1 of study ${STUDY}: the c1 sent is not the sum of the c1 parts`));
    });

    it('trusts the sum as sent, downloading nothing, when verifySum is false', async () => {
      const calls: string[] = [];
      const verifier = new SumVerifier(clientFor(calls), retry, { verifySum: false });
      const alone = encodePolys(ring, params, 'sum-c1', header, decodePolys(ring, params, 'update-c1', parts['site-a']!).polys);
      await verifier.verify(task, { ring, params, sum: alone, contributions: statements });
      await verifier.verify(task, { ring, params, sum: alone, contributions: statements });
      expect(calls).toEqual([]);
    });
  });
});
