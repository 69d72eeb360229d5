import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  C1PartSum,
  canonicalJson,
  createRootCa,
  decodePolys,
  encodePolys,
  federation,
  issueSiteCertificate,
  multipartySetup,
  sampleUniform,
  SeededStream,
  sha256Hex,
  signContribution,
  type IssuedCertificate,
  type MultipartySetup,
} from '@federa/shared';
import type { CoordinatorRetry, FederationClient } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import type { Outbound } from '../outbound/index.js';
import { PolicyRefusalError } from '../policy/index.js';
import { EpochSecrets } from './epoch-secrets.js';
import { MultipartyKeys } from './multiparty-keys.js';

const STUDY = '00000000-0000-4000-8000-000000000001';
const ROUND = 1;
const EPOCH = 1;
const VALUE_COUNT = 10;
const sites = ['site-a', 'site-b', 'site-c'] as const;
const { RefusalReason } = federation;

interface Sent {
  submission: federation.KeySwitchShareSubmission;
  resent: boolean;
}

describe('MultipartyKeys.keySwitch: what a member checks before it sends its key-switching share', () => {
  let ca: IssuedCertificate;
  let certs: Record<string, IssuedCertificate>;
  let stranger: IssuedCertificate;
  let setup: MultipartySetup;
  let sum: Uint8Array;
  let sumSha256: string;
  /** Each member's update's c1 part: the sum is theirs. */
  let parts: Record<string, Uint8Array>;
  let contributions: Record<string, federation.SignedContribution>;

  let stateDir: string;
  let sent: Sent[];
  let downloads: { studyId: string; round: number; sha: string }[];
  let partDownloads: string[];
  /** What the coordinator stub serves as the sum (the named sum unless a test swaps it). */
  let served: Uint8Array;
  /** What the coordinator stub serves as a key epoch's state (none unless a test sets it). */
  let epochState: federation.KeyEpochState | null;

  const contribution = (siteId: string, cert: IssuedCertificate, over: Partial<{ epoch: number; round: number; parameters: string }> = {}): federation.SignedContribution => {
    const c1Sha256 = parts[siteId] ? sha256Hex(parts[siteId]) : sha256Hex(randomBytes(16));
    const signed = signContribution(
      { epoch: over.epoch ?? EPOCH, studyId: STUDY, round: over.round ?? ROUND, siteId, parameters: over.parameters ?? setup.fingerprint, updateSha256: sha256Hex(randomBytes(16)), c1Sha256 },
      cert.privateKeyPem,
      cert.certificatePem,
    );
    return { statementJson: canonicalJson(signed.statement), signature: signed.signature, certificatePem: signed.certificatePem };
  };

  const task = (over: Partial<federation.KeySwitchTask> = {}): federation.KeySwitchTask => ({
    studyId: STUDY,
    round: ROUND,
    epoch: EPOCH,
    studyHash: 'f'.repeat(64),
    sumSha256,
    sumSizeBytes: sum.length,
    contributions: sites.map((s) => contributions[s]!),
    parameters: setup.fingerprint,
    cohort: [...sites],
    ...over,
  });

  const keysFor = (policy: Partial<SitePolicy> = {}): MultipartyKeys => {
    const client = {
      downloadSum: (studyId: string, round: number, sha: string): Promise<Uint8Array> => {
        downloads.push({ studyId, round, sha });
        return Promise.resolve(served);
      },
      downloadUpdateC1: (studyId: string, round: number, siteId: string): Promise<Uint8Array> => {
        partDownloads.push(siteId);
        return parts[siteId] ? Promise.resolve(parts[siteId]) : Promise.reject(new Error(`no update of ${siteId} in round ${round} of ${studyId}`));
      },
      getKeyEpoch: (): Promise<federation.KeyEpochState> =>
        epochState ? Promise.resolve(epochState) : Promise.reject(new Error('keySwitch must not need the network to complete an epoch whose model seed it holds')),
    } as unknown as FederationClient;
    const outbound = {
      submitKeySwitchShare: (submission: federation.KeySwitchShareSubmission, resent: boolean): Promise<federation.KeyEpochAck> => {
        sent.push({ submission, resent });
        return Promise.resolve({ alreadyHeld: false });
      },
    } as unknown as Outbound;
    const retry = { call: <T>(_what: string, fn: () => Promise<T>): Promise<T> => fn() } as unknown as CoordinatorRetry;
    const fullPolicy = { requireEncryption: true, minParticipants: 3, maxRounds: 100, shareMetrics: 'aggregate', minCountPerBin: 5, verifySum: true, autoApprove: false, ...policy } as SitePolicy;
    const a = certs['site-a']!;
    return new MultipartyKeys(stateDir, { siteId: 'site-a', caPem: ca.certificatePem, certificatePem: a.certificatePem, privateKeyPem: a.privateKeyPem }, client, outbound, fullPolicy, retry);
  };

  const storedShares = async (): Promise<string[]> => {
    try {
      return await readdir(join(stateDir, 'multiparty', 'shares'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  };

  /** The refusal keySwitch rejects with (fails the test if it resolves or throws anything else). */
  const refusalOf = async (keys: MultipartyKeys, t: federation.KeySwitchTask): Promise<PolicyRefusalError> => {
    const error = await keys.keySwitch(t).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PolicyRefusalError);
    return error as PolicyRefusalError;
  };

  beforeAll(async () => {
    ca = await createRootCa({ commonName: 'multiparty-keys test CA' });
    certs = Object.fromEntries(await Promise.all(sites.map(async (siteId) => [siteId, await issueSiteCertificate(ca, { siteId })] as const)));
    const otherCa = await createRootCa({ commonName: 'another CA' });
    stranger = await issueSiteCertificate(otherCa, { siteId: 'site-c' });
    setup = multipartySetup(ca.certificatePem);
    const { ring, params } = setup;
    const stream = new SeededStream(randomBytes(32), 'test/sum-c1');
    const header = { epoch: EPOCH, valueCount: VALUE_COUNT };
    const total = new C1PartSum(ring, params, header);
    parts = {};
    for (const siteId of sites) {
      parts[siteId] = encodePolys(ring, params, 'update-c1', header, Array.from({ length: Math.ceil(VALUE_COUNT / ring.n) }, () => sampleUniform(ring, stream)));
      total.add(parts[siteId]);
    }
    sum = total.encode();
    sumSha256 = sha256Hex(sum);
    contributions = Object.fromEntries(sites.map((s) => [s, contribution(s, certs[s]!)]));
  }, 60_000);

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'federa-multiparty-keys-'));
    sent = [];
    downloads = [];
    partDownloads = [];
    served = sum;
    epochState = null;
    // A completed epoch: the model seed is already derived, so keySwitch never has to finish the epoch over the network.
    await new EpochSecrets(stateDir).save({
      studyId: STUDY,
      epoch: EPOCH,
      members: [...sites],
      secretSeed: randomBytes(32).toString('hex'),
      contribution: randomBytes(32).toString('hex'),
      envelopesSent: true,
      modelSeed: randomBytes(32).toString('hex'),
    });
  });
  afterEach(() => rm(stateDir, { recursive: true, force: true }));

  it('refuses a sum of fewer contributions than policy.minParticipants, sends nothing and stores no share', async () => {
    const keys = keysFor({ minParticipants: 3 });
    const refusal = await refusalOf(keys, task({ contributions: [contributions['site-a']!, contributions['site-b']!] }));
    expect(refusal.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS);
    expect(refusal.message).toMatch(/minParticipants/);
    expect(refusal.message).toMatch(/holds 2 site\(s\)' updates; .*at least 3/);
    expect(sent).toEqual([]);
    expect(await storedShares()).toEqual([]);
    // A policy of two lets the same two contributions through, for a sum of those two.
    const { ring, params } = setup;
    const two = new C1PartSum(ring, params, { epoch: EPOCH, valueCount: VALUE_COUNT });
    two.add(parts['site-a']!);
    two.add(parts['site-b']!);
    served = two.encode();
    await keysFor({ minParticipants: 2 }).keySwitch(task({ sumSha256: sha256Hex(served), contributions: [contributions['site-a']!, contributions['site-b']!] }));
    expect(sent).toHaveLength(1);
  });

  it('refuses a contribution listed twice, one signed under another CA, or one that is not a member\'s', async () => {
    const keys = keysFor();
    const twice = await refusalOf(keys, task({ contributions: [contributions['site-a']!, contributions['site-b']!, contributions['site-b']!] }));
    expect(twice.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(twice.message).toMatch(/site-b: it is listed twice/);

    const foreign = await refusalOf(keys, task({ contributions: [contributions['site-a']!, contributions['site-b']!, contribution('site-c', stranger)] }));
    expect(foreign.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(foreign.message).toMatch(/site-c: its certificate is not one the consortium CA issued/);

    // Posing as another site: site-c's statement with site-a's certificate.
    const posing = { ...contributions['site-c']!, certificatePem: certs['site-a']!.certificatePem };
    const impostor = await refusalOf(keys, task({ contributions: [contributions['site-a']!, contributions['site-b']!, posing] }));
    expect(impostor.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(impostor.message).toMatch(/certificate of site-a/);

    // Another round's contribution, or a statement that is not JSON.
    const otherRound = await refusalOf(keys, task({ contributions: [contributions['site-a']!, contributions['site-b']!, contribution('site-c', certs['site-c']!, { round: 2 })] }));
    expect(otherRound.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(otherRound.message).toMatch(/not this sum's/);
    const garbled = await refusalOf(keys, task({ contributions: [contributions['site-a']!, contributions['site-b']!, { ...contributions['site-c']!, statementJson: '{not json' }] }));
    expect(garbled.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(garbled.message).toMatch(/malformed/);

    // A certified site that is not a member of the epoch.
    const outsider = await issueSiteCertificate(ca, { siteId: 'site-d' });
    const notMember = await refusalOf(keys, task({ contributions: [...sites.map((s) => contributions[s]!), contribution('site-d', outsider)] }));
    expect(notMember.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(notMember.message).toMatch(/site-d, who are not members of epoch 1/);

    expect(sent).toEqual([]);
    expect(await storedShares()).toEqual([]);
  });

  it('refuses a task naming a sum that is not the sum of the listed parts (verifySum) or, trusting the sum, whose bytes are not the ones named', async () => {
    const other = sum.slice();
    other[other.length - 1]! ^= 1;
    const built = await refusalOf(keysFor(), task({ sumSha256: sha256Hex(other) }));
    expect(built.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(built.message).toMatch(new RegExp(`those add up to ${sumSha256}, the task names ${sha256Hex(other)}`));
    // The member built the sum itself: the coordinator's was never downloaded.
    expect(partDownloads).toEqual([...sites]);
    expect(downloads).toEqual([]);
    // A member that trusts the sum downloads it, and still checks its bytes are the ones the task names.
    served = other;
    const trusting = await refusalOf(keysFor({ verifySum: false }), task());
    expect(trusting.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(trusting.message).toMatch(new RegExp(`hashes to ${sha256Hex(other)}, not the ${sumSha256}`));
    expect(downloads).toEqual([{ studyId: STUDY, round: ROUND, sha: sumSha256 }]);
    expect(sent).toEqual([]);
    expect(await storedShares()).toEqual([]);
  });

  it('sends one share per sum: a repeated task resends the stored bytes, also after a restart', async () => {
    const { ring, params } = setup;
    await keysFor().keySwitch(task());
    expect(sent).toHaveLength(1);
    const first = sent[0]!;
    expect(first.resent).toBe(false);
    expect(first.submission).toMatchObject({ studyId: STUDY, round: ROUND, epoch: EPOCH, sumSha256 });
    // A share blob for this epoch and the sum's length.
    const decoded = decodePolys(ring, params, 'share', new Uint8Array(first.submission.share), { epoch: EPOCH, valueCount: VALUE_COUNT });
    expect(decoded.polys).toHaveLength(Math.ceil(VALUE_COUNT / ring.n));
    // Stored before it was sent.
    expect(await storedShares()).toEqual([`${EPOCH}-${sumSha256}.share`]);
    expect(Buffer.compare(await readFile(join(stateDir, 'multiparty', 'shares', `${EPOCH}-${sumSha256}.share`)), first.submission.share)).toBe(0);

    // The same task again (a coordinator retry), and again from a new process over the same state folder.
    const keys = keysFor();
    await keys.keySwitch(task());
    await keys.keySwitch(task({ contributions: [...sites].reverse().map((s) => contributions[s]!) }));
    await keysFor().keySwitch(task());
    expect(sent).toHaveLength(4);
    for (const again of sent.slice(1)) {
      expect(again.resent).toBe(true);
      expect(Buffer.compare(again.submission.share, first.submission.share)).toBe(0);
    }
    expect(await storedShares()).toHaveLength(1);
    // The sum was checked once, when the share was computed: each listed update's c1 part downloaded once.
    expect(partDownloads).toEqual([...sites]);
  });

  it('checks the sum is the sum of the listed updates\' c1 parts before computing a share, unless policy.verifySum is false', async () => {
    const { ring, params } = setup;
    // The coordinator lists all three contributions but sends site-b's c1 alone as "the sum", as a sum-c1 blob.
    const alone = encodePolys(ring, params, 'sum-c1', { epoch: EPOCH, valueCount: VALUE_COUNT }, decodePolys(ring, params, 'update-c1', parts['site-b']!).polys);
    served = alone;
    const refusal = await refusalOf(keysFor(), task({ sumSha256: sha256Hex(alone) }));
    expect(refusal.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(refusal.message).toMatch(/the sum named is not the sum of the c1 parts of the 3 listed updates \(site-a, site-b, site-c\): those add up to/);
    expect(partDownloads).toEqual([...sites]);
    expect(downloads).toEqual([]);
    expect(sent).toEqual([]);
    expect(await storedShares()).toEqual([]);
    // Trusted as sent when the hospital turned the check off: the sum is downloaded, no part is.
    partDownloads = [];
    await keysFor({ verifySum: false }).keySwitch(task({ sumSha256: sha256Hex(alone) }));
    expect(partDownloads).toEqual([]);
    expect(downloads).toEqual([{ studyId: STUDY, round: ROUND, sha: sha256Hex(alone) }]);
    expect(sent).toHaveLength(1);
  });

  it('refuses a task naming other members than the epoch\'s, or other parameters, before downloading anything', async () => {
    const keys = keysFor();
    for (const cohort of [['site-a', 'site-b'], ['site-a', 'site-b', 'site-c', 'site-d'], ['site-a', 'site-b', 'site-d']]) {
      const refusal = await refusalOf(keys, task({ cohort }));
      expect(refusal.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
      expect(refusal.message).toMatch(/names members .* but key epoch 1 is site-a, site-b, site-c/);
    }
    const parameters = await refusalOf(keys, task({ parameters: 'ab'.repeat(32) }));
    expect(parameters.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(parameters.message).toMatch(/other CKKS parameters/);
    // Contributions signed for other parameters than this site derives.
    const signedOther = await refusalOf(keys, task({ contributions: sites.map((s) => contribution(s, certs[s]!, { parameters: 'cd'.repeat(32) })) }));
    expect(signedOther.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID);
    expect(signedOther.message).toMatch(/other CKKS parameters/);
    expect(downloads).toEqual([]);
    expect(partDownloads).toEqual([]);
    expect(sent).toEqual([]);
    expect(await storedShares()).toEqual([]);

    // The cohort's order does not matter: the members are compared sorted.
    await keysFor().keySwitch(task({ cohort: ['site-c', 'site-a', 'site-b'] }));
    expect(sent).toHaveLength(1);
  });

  it('refuses to help switch under an epoch whose published collective key does not check out, with KEY_EPOCH_INVALID, before downloading the sum', async () => {
    // An epoch this site joined but has not completed: it checks the published key before its secret touches a sum.
    await new EpochSecrets(stateDir).save({
      studyId: STUDY,
      epoch: 2,
      members: [...sites],
      secretSeed: randomBytes(32).toString('hex'),
      contribution: randomBytes(32).toString('hex'),
      envelopesSent: false,
    });
    epochState = { studyId: STUDY, epoch: 2, members: [...sites], parameters: setup.fingerprint, shares: [], collectiveKey: randomBytes(16), envelopes: [], status: 'open' };
    const refusal = await refusalOf(keysFor(), task({ epoch: 2 }));
    expect(refusal.refusal.reason).toBe(RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID);
    expect(refusal.message).toBe(`the collective key of epoch 2 of study ${STUDY} does not check out: the key lists no shares`);
    expect(downloads).toEqual([]);
    expect(sent).toEqual([]);
    expect(await storedShares()).toEqual([]);
  });

  it('refuses to join an epoch that does not name this site, with KEY_EPOCH_INVALID, and sends no key share', async () => {
    const error = await keysFor()
      .join(STUDY, { number: 3, members: ['site-b', 'site-c'], parameters: setup.fingerprint }, Date.now() + 5_000)
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(PolicyRefusalError);
    expect((error as PolicyRefusalError).refusal.reason).toBe(RefusalReason.REFUSAL_REASON_KEY_EPOCH_INVALID);
    expect((error as PolicyRefusalError).message).toBe(`key epoch 3 of study ${STUDY}: this site is not one of its members`);
  });

  it('cannot help with an epoch it holds no secret for', async () => {
    await expect(keysFor().keySwitch(task({ epoch: 2 }))).rejects.toThrow(/holds no secret share for key epoch 2/);
    expect(downloads).toEqual([]);
    expect(sent).toEqual([]);
  });
});
