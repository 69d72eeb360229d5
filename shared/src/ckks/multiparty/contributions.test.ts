import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, issueSiteCertificate, signCanonical, type IssuedCertificate } from '../../pki/index.js';
import { checkShareRequest, signContribution, type ShareRequest, type SignedContribution } from './contributions.js';

describe('what a site checks before it sends a key-switching share', () => {
  const sites = ['hospital-a', 'hospital-b', 'hospital-c'];
  const parameters = 'ab'.repeat(32);
  const sumBytes = new Uint8Array([1, 2, 3, 4]);
  const sumSha256 = createHash('sha256').update(sumBytes).digest('hex');
  let ca: IssuedCertificate;
  let certs: IssuedCertificate[];
  let signed: SignedContribution[];
  const request = (contributions: readonly SignedContribution[], over: Partial<ShareRequest> = {}): ShareRequest => ({
    epoch: 1,
    studyId: 'study-1',
    round: 2,
    parameters,
    sumSha256,
    contributions,
    ...over,
  });
  const check = (r: ShareRequest, minParticipants = 3, bytes = sumBytes) => checkShareRequest(r, { sumBytes: bytes, minParticipants, caPem: ca.certificatePem, revoked: [] });

  beforeAll(async () => {
    ca = await createRootCa({ commonName: 'contributions CA' });
    certs = await Promise.all(sites.map((siteId) => issueSiteCertificate(ca, { siteId })));
    signed = sites.map((siteId, i) =>
      signContribution({ epoch: 1, studyId: 'study-1', round: 2, siteId, parameters, updateSha256: String(i).repeat(64), c1Sha256: String(i + 3).repeat(64) }, certs[i]!.privateKeyPem, certs[i]!.certificatePem),
    );
  }, 60_000);

  it('shares for a sum of at least minParticipants updates signed by distinct certified sites', () => {
    expect(check(request(signed))).toEqual({ ok: true, sites, statements: signed.map((s) => s.statement) });
    // Listed in any order, the statements come back in the sites' order.
    expect(check(request([...signed].reverse()))).toEqual({ ok: true, sites, statements: signed.map((s) => s.statement) });
  });

  it('refuses a statement without c1Sha256 (one signed before the c1 part was signed), however well signed', () => {
    const { c1Sha256: _dropped, ...older } = signed[1]!.statement;
    const resigned = { statement: older as SignedContribution['statement'], signature: signCanonical(older, certs[1]!.privateKeyPem), certificatePem: certs[1]!.certificatePem };
    expect(check(request([signed[0]!, resigned, signed[2]!]))).toMatchObject({ ok: false, reason: expect.stringMatching(/statement is malformed/) as unknown });
    expect(() => signContribution(older as unknown as Parameters<typeof signContribution>[0], certs[1]!.privateKeyPem, certs[1]!.certificatePem)).toThrow(/c1Sha256/);
  });

  it('refuses a sum of fewer sites than its policy allows, one site counted twice, or one posing as another', () => {
    expect(check(request(signed.slice(0, 2)))).toMatchObject({ ok: false, reason: expect.stringMatching(/holds 2 site\(s\)' updates; .* at least 3/) as unknown });
    expect(check(request([signed[0]!, signed[0]!, signed[1]!]))).toMatchObject({ ok: false, reason: expect.stringMatching(/listed twice/) as unknown });
    const posing = { ...signed[2]!, certificatePem: certs[0]!.certificatePem };
    expect(check(request([signed[0]!, signed[1]!, posing]))).toMatchObject({ ok: false, reason: expect.stringMatching(/certificate of hospital-a/) as unknown });
    const edited = { ...signed[1]!, statement: { ...signed[1]!.statement, updateSha256: 'f'.repeat(64) } };
    expect(check(request([signed[0]!, edited, signed[2]!]))).toMatchObject({ ok: false, reason: expect.stringMatching(/signature does not verify/) as unknown });
  });

  it('refuses contributions of another round or parameters, and a sum other than the one the request names', () => {
    expect(check(request(signed, { round: 3 }))).toMatchObject({ ok: false, reason: expect.stringMatching(/not this sum's/) as unknown });
    expect(check(request(signed, { parameters: 'cd'.repeat(32) }))).toMatchObject({ ok: false, reason: expect.stringMatching(/other CKKS parameters/) as unknown });
    expect(check(request(signed), 3, new Uint8Array([9]))).toMatchObject({ ok: false, reason: expect.stringMatching(/hashes to .* not the/) as unknown });
  });

  it('refuses a revoked site\'s contribution', () => {
    const revoked = [{ siteId: 'hospital-b', serialNumber: certs[1]!.serialNumber, fingerprint256: certs[1]!.fingerprint256, revokedAt: new Date().toISOString() }];
    expect(checkShareRequest(request(signed), { sumBytes, minParticipants: 2, caPem: ca.certificatePem, revoked })).toMatchObject({ ok: false, reason: expect.stringMatching(/hospital-b: its certificate is revoked/) as unknown });
  });
});
