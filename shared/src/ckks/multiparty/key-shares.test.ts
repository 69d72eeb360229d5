import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, issueSiteCertificate, type IssuedCertificate, type RevocationEntry } from '../../pki/index.js';
import { deriveMultipartyParameters } from './params.js';
import { collectivePublicKey, commonPolynomial, keyShare, ringOf } from './protocol.js';
import { SeededStream } from './ring.js';
import { signKeyShare, verifyCollectiveKey, type SignedKeyShare } from './key-shares.js';
import { packResidues, residueBytes, unpackResidues } from './wire.js';

describe('signed public-key shares and the collective key', () => {
  const params = deriveMultipartyParameters();
  const ring = ringOf(params);
  const studyId = 'study-1';
  const a = commonPolynomial(ring, new Uint8Array(32).fill(9), { studyId, epoch: 1 });
  let ca: IssuedCertificate;
  let certs: IssuedCertificate[];
  let signed: SignedKeyShare[];
  let publicKey: Uint8Array;
  const sites = ['hospital-a', 'hospital-b', 'hospital-c'];
  const pack = (poly: Uint32Array): Uint8Array => {
    const out = new Uint8Array(residueBytes(ring));
    packResidues(ring, poly, out, 0);
    return out;
  };
  const unpack = (bytes: Uint8Array): Uint32Array => unpackResidues(ring, bytes, 0).poly;

  beforeAll(async () => {
    ca = await createRootCa({ commonName: 'test consortium CA' });
    certs = await Promise.all(sites.map((siteId) => issueSiteCertificate(ca, { siteId })));
    const shares = sites.map(() => keyShare(ring, a, new SeededStream(randomBytes(32), 'key-share')));
    signed = shares.map((s, i) =>
      signKeyShare(ring, params, { studyId, epoch: 1, siteId: sites[i]!, publicShare: s.publicShare, privateKeyPem: certs[i]!.privateKeyPem, certificatePem: certs[i]!.certificatePem }),
    );
    publicKey = pack(collectivePublicKey(ring, shares.map((s) => s.publicShare)));
  }, 60_000);

  const check = (
    shares: readonly SignedKeyShare[],
    options: { key?: Uint8Array; revoked?: RevocationEntry[]; epoch?: number; studyId?: string; members?: readonly string[] } = {},
  ) =>
    verifyCollectiveKey(ring, params, {
      studyId: options.studyId ?? studyId,
      epoch: options.epoch ?? 1,
      shares,
      publicKey: options.key ?? publicKey,
      caPem: ca.certificatePem,
      revoked: options.revoked ?? [],
      ...(options.members ? { members: options.members } : {}),
    });

  it('accepts the sum of shares signed by distinct certified sites', () => {
    const result = check(signed);
    expect(result).toMatchObject({ ok: true, sites });
  });

  it('refuses a forged share: other bytes than signed, a share signed with another site\'s certificate, a site listed twice', () => {
    const altered = { ...signed[1]!, share: signed[1]!.share.slice() };
    altered.share[10] ^= 1;
    expect(check([signed[0]!, altered, signed[2]!])).toMatchObject({ ok: false, siteId: 'hospital-b', reason: expect.stringMatching(/not the ones it signed/) as unknown });
    const impostor = { ...signed[1]!, certificatePem: certs[0]!.certificatePem };
    expect(check([signed[0]!, impostor, signed[2]!])).toMatchObject({ ok: false, reason: expect.stringMatching(/signed with the certificate of hospital-a/) as unknown });
    expect(check([signed[0]!, signed[0]!, signed[2]!])).toMatchObject({ ok: false, reason: expect.stringMatching(/listed twice/) as unknown });
  });

  it('refuses a share signed by a revoked site, for another epoch, or not certified by the consortium CA', async () => {
    const revoked: RevocationEntry[] = [{ siteId: 'hospital-c', serialNumber: certs[2]!.serialNumber, fingerprint256: certs[2]!.fingerprint256, revokedAt: new Date().toISOString() }];
    expect(check(signed, { revoked })).toMatchObject({ ok: false, siteId: 'hospital-c', reason: expect.stringMatching(/revoked/) as unknown });
    expect(check(signed, { epoch: 2 })).toMatchObject({ ok: false, reason: expect.stringMatching(/epoch 1, not 2/) as unknown });
    const otherCa = await createRootCa({ commonName: 'another CA' });
    const stranger = await issueSiteCertificate(otherCa, { siteId: 'hospital-c' });
    const foreign = signKeyShare(ring, params, { studyId, epoch: 1, siteId: 'hospital-c', publicShare: keyShare(ring, a, new SeededStream(randomBytes(32), 'k')).publicShare, privateKeyPem: stranger.privateKeyPem, certificatePem: stranger.certificatePem });
    expect(check([signed[0]!, signed[1]!, foreign])).toMatchObject({ ok: false, reason: expect.stringMatching(/not one the consortium CA issued/) as unknown });
  });

  it('refuses a share signed for another study', () => {
    expect(check(signed, { studyId: 'study-2' })).toMatchObject({ ok: false, siteId: 'hospital-a', reason: expect.stringMatching(/study study-1, not study-2/) as unknown });
    // The study is in the signed statement: relabelling a share breaks its signature.
    const relabelled = { ...signed[0]!, statement: { ...signed[0]!.statement, studyId: 'study-2' } };
    expect(check([relabelled, signed[1]!, signed[2]!], { studyId: 'study-2' })).toMatchObject({ ok: false, reason: expect.stringMatching(/signature does not verify/) as unknown });
  });

  it('with the study\'s members, accepts exactly their shares and names a missing or extra site', () => {
    expect(check(signed, { members: [...sites].reverse() })).toMatchObject({ ok: true, sites });
    const twoShares = pack(collectivePublicKey(ring, signed.slice(0, 2).map((s) => unpack(s.share))));
    expect(check(signed.slice(0, 2), { key: twoShares })).toMatchObject({ ok: true });
    expect(check(signed.slice(0, 2), { key: twoShares, members: sites })).toMatchObject({
      ok: false,
      siteId: 'hospital-c',
      reason: expect.stringMatching(/lacks the share of member hospital-c/) as unknown,
    });
    expect(check(signed, { members: sites.slice(0, 2) })).toMatchObject({
      ok: false,
      siteId: 'hospital-c',
      reason: expect.stringMatching(/share of hospital-c, not a member/) as unknown,
    });
  });

  it('refuses a published key that is not the sum of the shares listed (a share the coordinator slipped in)', () => {
    const own = keyShare(ring, a, new SeededStream(randomBytes(32), 'coordinator'));
    const tampered = pack(ring.add(collectivePublicKey(ring, [own.publicShare]), ring.zero()));
    expect(check(signed, { key: tampered })).toMatchObject({ ok: false, reason: expect.stringMatching(/not the sum of the shares/) as unknown });
    // Listing only two of the three shares the key was made of is the same refusal.
    expect(check(signed.slice(0, 2))).toMatchObject({ ok: false, reason: expect.stringMatching(/not the sum/) as unknown });
  });
});
