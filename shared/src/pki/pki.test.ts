import { createHash, createPrivateKey, X509Certificate, webcrypto } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CertificateRejectedError,
  PkiError,
  assertCertificateTrusted,
  certificateFingerprint,
  createRootCa,
  extractSiteId,
  inspectCertificate,
  issueServerCertificate,
  issueSiteCertificate,
  keyMatchesCertificate,
  verifyCertificate,
  type CertificateAuthorityPem,
  type CertificateVerification,
  type IssuedCertificate,
} from './index.js';
import { x509 } from './x509.js';

const DAY = 86_400_000;

function caOf(issued: IssuedCertificate): CertificateAuthorityPem {
  return { certificatePem: issued.certificatePem, privateKeyPem: issued.privateKeyPem };
}

function rejection(result: CertificateVerification): { code: string; reason: string } {
  if (result.ok) throw new Error('expected the certificate to be rejected');
  return { code: result.code, reason: result.reason };
}

let root: IssuedCertificate;
let ca: CertificateAuthorityPem;
let server: IssuedCertificate;
let site: IssuedCertificate;

beforeAll(async () => {
  root = await createRootCa({ organization: 'Example "North" consortium, EU' });
  ca = caOf(root);
  server = await issueServerCertificate(ca, { dnsNames: ['coordinator.example.org', 'localhost'], ipAddresses: ['127.0.0.1', '::1'] });
  site = await issueSiteCertificate(ca, { siteId: 'hospital-a', validityDays: 365 });
});

describe('createRootCa', () => {
  it('makes a ten-year self-signed P-384 CA that may only sign certificates and CRLs', () => {
    const cert = new X509Certificate(root.certificatePem);
    expect(cert.ca).toBe(true);
    expect(cert.subject).toContain('CN=Federa root CA');
    expect(new x509.X509Certificate(root.certificatePem).subjectName.getField('O')).toEqual(['Example "North" consortium, EU']);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    const years = (root.notAfter.getTime() - root.notBefore.getTime()) / (365 * DAY);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);

    const lib = new x509.X509Certificate(root.certificatePem);
    const basic = lib.getExtension(x509.BasicConstraintsExtension);
    expect(basic?.ca).toBe(true);
    expect(basic?.pathLength).toBe(0);
    expect(basic?.critical).toBe(true);
    const usage = lib.getExtension(x509.KeyUsagesExtension);
    expect(usage?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(usage?.critical).toBe(true);
    expect(root.privateKeyPem).toContain('-----BEGIN PRIVATE KEY-----');
    expect(keyMatchesCertificate(root.certificatePem, root.privateKeyPem)).toBe(true);
  });

  it('can use P-256 and names the field of a bad option', async () => {
    const small = await createRootCa({ curve: 'P-256', validityDays: 30 });
    expect(new X509Certificate(small.certificatePem).publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    await expect(createRootCa({ validityDays: 0 })).rejects.toThrow(/validityDays/);
    await expect(createRootCa({ commonName: 'x'.repeat(65) })).rejects.toThrow(/commonName/);
  });
});

describe('issued certificates', () => {
  it('gives the coordinator a serverAuth certificate with its DNS names and IPs as SANs', () => {
    const details = inspectCertificate(server.certificatePem);
    expect(details.commonName).toBe('coordinator.example.org');
    expect(details.dnsNames).toEqual(['coordinator.example.org', 'localhost']);
    expect(details.ipAddresses).toEqual(['127.0.0.1', '::1']);
    expect(details.extendedKeyUsages).toEqual(['serverAuth']);
    expect(details.isCa).toBe(false);
    expect(details.issuer).toBe(inspectCertificate(root.certificatePem).subject);
    expect(keyMatchesCertificate(server.certificatePem, server.privateKeyPem)).toBe(true);
    expect(keyMatchesCertificate(server.certificatePem, site.privateKeyPem)).toBe(false);
  });

  it('gives a site a clientAuth certificate naming it as CN and as urn:federa:site URI', () => {
    const details = inspectCertificate(site.certificatePem);
    expect(details.commonName).toBe('hospital-a');
    expect(details.uris).toEqual(['urn:federa:site:hospital-a']);
    expect(details.extendedKeyUsages).toEqual(['clientAuth']);
    expect(Math.round((site.notAfter.getTime() - site.notBefore.getTime()) / DAY)).toBe(365);
    expect(extractSiteId(site.certificatePem)).toBe('hospital-a');
    expect(createPrivateKey(site.privateKeyPem).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('reports SHA-256 fingerprints of the DER certificate in Node fingerprint256 format', () => {
    const der = new X509Certificate(site.certificatePem).raw;
    const expected = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
    expect(site.fingerprint256).toBe(expected);
    expect(certificateFingerprint(site.certificatePem)).toBe(expected);
    expect(certificateFingerprint(new Uint8Array(der))).toBe(expected);
    expect(server.fingerprint256).not.toBe(site.fingerprint256);
    expect(site.serialNumber).toMatch(/^[0-9A-F]{32}$/);
  });

  it('refuses bad requests with the field named', async () => {
    await expect(issueSiteCertificate(ca, { siteId: 'Hospital A' })).rejects.toThrow(/siteId: a site id is/);
    await expect(issueServerCertificate(ca, { dnsNames: ['10.0.0.1'] })).rejects.toThrow(/dnsNames\.0: is an IP address/);
    await expect(issueServerCertificate(ca, { dnsNames: ['bad_name.example'] })).rejects.toThrow(/dnsNames\.0: is not a valid DNS name/);
    await expect(issueServerCertificate(ca, { ipAddresses: ['300.1.1.1'] })).rejects.toThrow(/ipAddresses\.0/);
    await expect(issueServerCertificate(ca, {})).rejects.toThrow(/at least one DNS name or IP/);
    await expect(issueSiteCertificate(ca, { siteId: 'a', validityDays: 4000 })).rejects.toThrow(/after the CA itself/);
  });

  it('refuses to issue from a key that is not the CA certificate key, or from a leaf', async () => {
    const other = await createRootCa();
    await expect(issueSiteCertificate({ certificatePem: root.certificatePem, privateKeyPem: other.privateKeyPem }, { siteId: 'a' })).rejects.toThrow(
      /does not belong to the CA certificate/,
    );
    await expect(issueSiteCertificate(caOf(site), { siteId: 'a' })).rejects.toThrow(/is not a CA certificate/);
    await expect(issueSiteCertificate({ ...ca, privateKeyPem: 'nonsense' }, { siteId: 'a' })).rejects.toBeInstanceOf(PkiError);
  });
});

describe('verifyCertificate', () => {
  it('accepts a site certificate that chains to the CA and returns its identity', () => {
    const result = verifyCertificate(site.certificatePem, root.certificatePem, { purpose: 'client' });
    expect(result).toEqual({
      ok: true,
      certificate: expect.objectContaining({ siteId: 'hospital-a', fingerprint256: site.fingerprint256, serialNumber: site.serialNumber }),
    });
    const verified = assertCertificateTrusted(server.certificatePem, root.certificatePem, { purpose: 'server' });
    expect(verified.siteId).toBeNull();
  });

  it("rejects another CA's certificate, whatever that CA calls itself", async () => {
    const otherNamed = await createRootCa({ commonName: 'Other root' });
    const foreign = await issueSiteCertificate(caOf(otherNamed), { siteId: 'hospital-a' });
    const differentName = rejection(verifyCertificate(foreign.certificatePem, root.certificatePem, { purpose: 'client' }));
    expect(differentName.code).toBe('untrusted-issuer');
    expect(differentName.reason).toMatch(/issued by "CN=Other root", not by the consortium CA/);

    const sameName = await createRootCa({ organization: 'Example "North" consortium, EU' });
    const impostor = await issueSiteCertificate(caOf(sameName), { siteId: 'hospital-a' });
    const lookalike = rejection(verifyCertificate(impostor.certificatePem, root.certificatePem, { purpose: 'client' }));
    expect(lookalike.code).toBe('untrusted-issuer');
    expect(lookalike.reason).toMatch(/does not verify with the CA's key/);
  });

  it('rejects an expired certificate and one not yet valid, and accepts them at a time inside their validity', async () => {
    const expired = await issueSiteCertificate(ca, { siteId: 'hospital-a', notBefore: new Date(Date.now() - 400 * DAY), validityDays: 30 });
    const result = rejection(verifyCertificate(expired.certificatePem, root.certificatePem, { purpose: 'client' }));
    expect(result.code).toBe('expired');
    expect(result.reason).toContain(`expired on ${expired.notAfter.toISOString()}`);

    const future = await issueSiteCertificate(ca, { siteId: 'hospital-a', notBefore: new Date(Date.now() + 10 * DAY) });
    expect(rejection(verifyCertificate(future.certificatePem, root.certificatePem, { purpose: 'client' })).code).toBe('not-yet-valid');
    expect(verifyCertificate(future.certificatePem, root.certificatePem, { purpose: 'client', at: new Date(Date.now() + 11 * DAY) }).ok).toBe(
      true,
    );
  });

  it('rejects a self-signed certificate, even one that copies the CA name and the site identity', async () => {
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const forged = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=hospital-a',
      keys,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + DAY),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'urn:federa:site:hospital-a' }]),
      ],
    });
    const result = rejection(verifyCertificate(forged.toString('pem'), root.certificatePem, { purpose: 'client' }));
    expect(result.code).toBe('self-signed');
    expect(result.reason).toMatch(/"CN=hospital-a" is self-signed/);
    // The CA certificate itself is not a participant certificate either.
    expect(rejection(verifyCertificate(root.certificatePem, root.certificatePem, { purpose: 'client' })).code).toBe('self-signed');
  });

  it('rejects a certificate with the wrong extended key usage', () => {
    const asClient = rejection(verifyCertificate(server.certificatePem, root.certificatePem, { purpose: 'client' }));
    expect(asClient.code).toBe('wrong-purpose');
    expect(asClient.reason).toMatch(/has extended key usage serverAuth, but a TLS client \(a site\) needs clientAuth/);
    const asServer = rejection(verifyCertificate(site.certificatePem, root.certificatePem, { purpose: 'server' }));
    expect(asServer.code).toBe('wrong-purpose');
    expect(asServer.reason).toMatch(/needs serverAuth/);
  });

  it('rejects a certificate without any extended key usage', async () => {
    const signer = await webcrypto.subtle.importKey(
      'pkcs8',
      createPrivateKey(root.privateKeyPem).export({ type: 'pkcs8', format: 'der' }),
      { name: 'ECDSA', namedCurve: 'P-384' },
      false,
      ['sign'],
    );
    const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const bare = await x509.X509CertificateGenerator.create({
      subject: 'CN=hospital-a',
      issuer: new x509.X509Certificate(root.certificatePem).subjectName,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + DAY),
      publicKey: keys.publicKey,
      signingKey: signer,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'urn:federa:site:hospital-b' }])],
    });
    const result = rejection(verifyCertificate(bare.toString('pem'), root.certificatePem, { purpose: 'client' }));
    expect(result.code).toBe('wrong-purpose');
    expect(result.reason).toMatch(/has no extended key usage/);
    // Same certificate, inconsistent identity: CN hospital-a, URI hospital-b.
    expect(() => extractSiteId(bare.toString('pem'))).toThrow(/subject CN \["hospital-a"\] but SAN site id "hospital-b"/);
  });

  it('rejects a trust anchor that is not a valid CA', async () => {
    const notCa = rejection(verifyCertificate(site.certificatePem, server.certificatePem, { purpose: 'client' }));
    expect(notCa.code).toBe('bad-ca');
    expect(notCa.reason).toMatch(/is not a CA certificate/);
    const oldRoot = await createRootCa({ notBefore: new Date(Date.now() - 40 * DAY), validityDays: 30 });
    const expiredCa = rejection(verifyCertificate(site.certificatePem, oldRoot.certificatePem, { purpose: 'client' }));
    expect(expiredCa.code).toBe('bad-ca');
    expect(expiredCa.reason).toMatch(/expired on/);
  });

  it('rejects unreadable input as malformed and throws CertificateRejectedError from the asserting form', () => {
    expect(rejection(verifyCertificate('not a certificate', root.certificatePem, { purpose: 'client' })).code).toBe('malformed');
    expect(() => assertCertificateTrusted(server.certificatePem, root.certificatePem, { purpose: 'client' })).toThrow(CertificateRejectedError);
  });
});

describe('extractSiteId', () => {
  it('reads the site id and refuses certificates without one', () => {
    expect(extractSiteId(new Uint8Array(new X509Certificate(site.certificatePem).raw))).toBe('hospital-a');
    let error: unknown;
    try {
      extractSiteId(server.certificatePem);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(CertificateRejectedError);
    expect((error as CertificateRejectedError).code).toBe('no-site-identity');
    expect((error as Error).message).toMatch(/must name exactly one site in a urn:federa:site:<id> subjectAltName URI; it names 0/);
  });
});
