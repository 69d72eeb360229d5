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
import { partWindow, sumOfContributions, SumVerifier, type SumOfPartsInput } from './sum-verification.js';

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
  let key: { p: Uint32Array; a: Uint32Array };
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

  /** The check as a member runs it for a task naming `sum` (its hash, size and epoch). */
  const check = (sum: Uint8Array, listed: readonly ContributionStatement[] = statements, window?: number) => {
    asked = [];
    inFlight = 0;
    mostInFlight = 0;
    const input: SumOfPartsInput = { ring, params, sum: { epoch: EPOCH, sha256: sha256Hex(sum), sizeBytes: sum.byteLength }, contributions: listed, download, ...(window ? { window } : {}) };
    return sumOfContributions(input);
  };

  beforeAll(() => {
    const a = commonPolynomial(ring, randomBytes(32), { studyId: STUDY, epoch: EPOCH });
    key = { p: collectivePublicKey(ring, SITES.map(() => keyShare(ring, a, new SeededStream(randomBytes(32), 'key-share')).publicShare)), a };
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

  it('builds the coordinator\'s honest sum from the listed parts, each downloaded once, a window at a time', async () => {
    served = { ...parts };
    expect(await check(honest)).toEqual({ ok: true, sum: honest });
    expect(asked).toEqual([...SITES]);
    // Small parts: all three in flight together.
    expect(mostInFlight).toBe(3);
    expect(await check(honest, statements, 1)).toEqual({ ok: true, sum: honest });
    expect(mostInFlight).toBe(1);
    expect(await check(honest, statements, 2)).toEqual({ ok: true, sum: honest });
    expect(mostInFlight).toBe(2);
    // As many parts as fit 256 MiB, one at least and four at most.
    expect([partWindow(1000), partWindow(100 * 1024 ** 2), partWindow(200 * 1024 ** 2), partWindow(1024 ** 3)]).toEqual([4, 2, 1, 1]);
  });

  it('refuses (a) a "sum" that is one listed update\'s c1 alone', async () => {
    served = { ...parts };
    const alone = encodePolys(ring, params, 'sum-c1', header, decodePolys(ring, params, 'update-c1', parts['site-b']!).polys);
    expect(await check(alone)).toEqual({
      ok: false,
      reason: `the sum named is not the sum of the c1 parts of the 3 listed updates (site-a, site-b, site-c): those add up to ${sha256Hex(honest)}, the task names ${sha256Hex(alone)}`,
    });
  });

  it('refuses (b) a c1 part whose bytes are not the ones its site signed, and stops there', async () => {
    // site-b's c1 part swapped for site-c's: well formed, but not what site-b signed.
    served = { ...parts, 'site-b': parts['site-c']! };
    expect(await check(honest, statements, 1)).toEqual({
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
    // The first part decides the length: one of another length than the task's sum is refused.
    const shorter = updateC1Part(ring, params, encodeCiphertexts(ring, params, 'update', { epoch: EPOCH, valueCount: ring.n }, encryptVector(ring, params, key, new Float64Array(ring.n), new SeededStream(randomBytes(32), 'e'))));
    served = { ...parts, 'site-a': shorter };
    const serve = (siteId: string): Promise<Uint8Array> => Promise.resolve(served[siteId]!);
    const result = await sumOfContributions({ ring, params, sum: { epoch: EPOCH, sha256: sha256Hex(honest), sizeBytes: honest.byteLength }, contributions: [statementOf('site-a', sha256Hex(shorter)), statements[1]!], download: serve });
    expect(result).toEqual({ ok: false, reason: `the c1 part of site-a's update holds ${ring.n} values, not a sum of ${honest.byteLength} bytes` });
  });

  it('refuses (c) a sum missing one of the listed updates', async () => {
    served = { ...parts };
    const short = sumUpdates(ring, params, header, [updates['site-a']!, updates['site-c']!]).c1;
    expect(await check(short)).toMatchObject({ ok: false, reason: expect.stringMatching(/^the sum named is not the sum of the c1 parts of the 3 listed updates .*: those add up to [0-9a-f]{64}, the task names/) as unknown });
    // Listing only the two summed makes it a sum of what is listed.
    expect(await check(short, [statements[0]!, statements[2]!])).toEqual({ ok: true, sum: short });
  });

  it('refuses a list of no contributions, and a task naming a sum of no or too many bytes, downloading nothing', async () => {
    expect(await check(honest, [])).toEqual({ ok: false, reason: 'the sum lists no contribution' });
    for (const sizeBytes of [0, 5 * 1024 ** 3]) {
      const result = await sumOfContributions({ ring, params, sum: { epoch: EPOCH, sha256: sha256Hex(honest), sizeBytes }, contributions: statements, download });
      expect(result).toMatchObject({ ok: false, reason: expect.stringMatching(new RegExp(`^the task names a sum of ${sizeBytes} bytes, outside`)) as unknown });
    }
    expect(asked).toEqual([]);
  });

  describe('SumVerifier: policy.verifySum', () => {
    const retry = { call: <T>(_what: string, fn: () => Promise<T>): Promise<T> => fn() };
    const clientFor = (calls: string[], sum: Uint8Array) => ({
      downloadUpdateC1: (studyId: string, round: number, siteId: string, bytes: number): Promise<Uint8Array> => {
        calls.push(`${studyId}/${round}/${siteId}`);
        return download(siteId, bytes);
      },
      downloadSum: (studyId: string, round: number): Promise<Uint8Array> => {
        calls.push(`${studyId}/${round}/sum`);
        return Promise.resolve(sum);
      },
    });
    const taskFor = (sum: Uint8Array) => ({ studyId: STUDY, round: 1, epoch: EPOCH, sumSha256: sha256Hex(sum), sumSizeBytes: sum.byteLength });

    it('builds the sum from the parts without downloading the coordinator\'s, and refuses one that is not theirs with SHARE_REQUEST_INVALID', async () => {
      const calls: string[] = [];
      served = { ...parts };
      asked = [];
      const verifier = new SumVerifier(clientFor(calls, honest), retry, { verifySum: true });
      const built = await verifier.sumFor(taskFor(honest), { ring, params, contributions: statements });
      expect(Buffer.compare(built, honest)).toBe(0);
      expect(calls).toEqual(SITES.map((s) => `${STUDY}/1/${s}`));
      const alone = encodePolys(ring, params, 'sum-c1', header, decodePolys(ring, params, 'update-c1', parts['site-a']!).polys);
      const error = await new SumVerifier(clientFor(calls, alone), retry, { verifySum: true }).sumFor(taskFor(alone), { ring, params, contributions: statements }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PolicyRefusalError);
      expect((error as PolicyRefusalError).refusal.reason).toBe(federation.RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
      expect((error as PolicyRefusalError).message).toMatch(new RegExp(`^this site will not help decrypt round 1 of study ${STUDY}: the sum named is not the sum of the c1 parts`));
      expect(calls.filter((c) => c.endsWith('/sum'))).toEqual([]);
    });

    it('downloads the sum and trusts it as sent, no part downloaded, when verifySum is false; its hash must still be the one named', async () => {
      const calls: string[] = [];
      const alone = encodePolys(ring, params, 'sum-c1', header, decodePolys(ring, params, 'update-c1', parts['site-a']!).polys);
      const verifier = new SumVerifier(clientFor(calls, alone), retry, { verifySum: false });
      expect(Buffer.compare(await verifier.sumFor(taskFor(alone), { ring, params, contributions: statements }), alone)).toBe(0);
      await verifier.sumFor(taskFor(alone), { ring, params, contributions: statements });
      expect(calls).toEqual([`${STUDY}/1/sum`, `${STUDY}/1/sum`]);
      await expect(verifier.sumFor(taskFor(honest), { ring, params, contributions: statements })).rejects.toThrow(new RegExp(`the sum received hashes to ${sha256Hex(alone)}, not the ${sha256Hex(honest)} the task names`));
    });
  });
});
