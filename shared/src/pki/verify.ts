import { siteIdSchema } from '../study/index.js';
import {
  EKU_CLIENT_AUTH,
  EKU_SERVER_AUTH,
  extendedKeyUsageOids,
  parseCertificate,
  type CertificateInput,
  type ParsedCertificate,
} from './certificate.js';
import { CertificateRejectedError, type CertificateRejectionCode } from './errors.js';
import { x509 } from './x509.js';

/** A site's identity inside its client certificate's subjectAltName, e.g. `urn:federa:site:hospital-a`. */
export const SITE_URI_PREFIX = 'urn:federa:site:';

export function siteUri(siteId: string): string {
  return `${SITE_URI_PREFIX}${siteId}`;
}

/** server: the coordinator's TLS server certificate; client: a site's TLS client certificate. */
export type CertificatePurpose = 'server' | 'client';

export interface VerifyCertificateOptions {
  purpose: CertificatePurpose;
  /** The moment to check validity at; now when absent. */
  at?: Date;
}

export interface VerifiedCertificate {
  subject: string;
  issuer: string;
  serialNumber: string;
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
  /** The site id of a client certificate; null for a server certificate. */
  siteId: string | null;
}

export type CertificateVerification =
  | { ok: true; certificate: VerifiedCertificate }
  | { ok: false; code: CertificateRejectionCode; reason: string };

const PURPOSES: Record<CertificatePurpose, { oid: string; name: string; role: string }> = {
  server: { oid: EKU_SERVER_AUTH, name: 'serverAuth', role: 'a TLS server (the coordinator)' },
  client: { oid: EKU_CLIENT_AUTH, name: 'clientAuth', role: 'a TLS client (a site)' },
};

function reject(code: CertificateRejectionCode, reason: string): never {
  throw new CertificateRejectedError(code, reason);
}

function isSelfSigned(cert: ParsedCertificate): boolean {
  // Name equality plus a signature check with its own key: a leaf whose subject merely equals its issuer is not enough.
  return cert.node.subject === cert.node.issuer && cert.node.verify(cert.node.publicKey);
}

function checkAuthority(ca: ParsedCertificate, at: Date): void {
  const subject = ca.lib.subject;
  if (!ca.node.ca) {
    reject('bad-ca', `the trust anchor "${subject}" is not a CA certificate (basicConstraints CA is not set)`);
  }
  const keyUsage = ca.lib.getExtension(x509.KeyUsagesExtension);
  if (keyUsage !== null && (keyUsage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    reject('bad-ca', `the trust anchor "${subject}" may not sign certificates (keyUsage lacks keyCertSign)`);
  }
  if (!isSelfSigned(ca)) {
    reject('bad-ca', `the trust anchor "${subject}" is not a self-signed root CA`);
  }
  if (at < ca.lib.notBefore) {
    reject('bad-ca', `the consortium CA "${subject}" is not valid before ${ca.lib.notBefore.toISOString()}`);
  }
  if (at > ca.lib.notAfter) {
    reject('bad-ca', `the consortium CA "${subject}" expired on ${ca.lib.notAfter.toISOString()}: every kit must be re-provisioned`);
  }
}

/**
 * The site id a client certificate names. Federa issues it twice, as the subject CN and as a
 * `urn:federa:site:<id>` SAN URI; both must be present and agree, so a certificate with an ambiguous
 * identity is refused instead of picking one. Only meaningful after the certificate was verified.
 */
export function extractSiteId(certificate: CertificateInput): string {
  return siteIdOf(parseCertificate(certificate, 'client certificate'));
}

function siteIdOf(cert: ParsedCertificate): string {
  const subject = cert.lib.subject;
  let uris: string[];
  try {
    const names = cert.lib.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
    uris = names.filter((name) => name.type === 'url' && name.value.startsWith(SITE_URI_PREFIX)).map((name) => name.value);
  } catch (error) {
    reject('malformed', `certificate "${subject}" has an unreadable subjectAltName: ${(error as Error).message}`);
  }
  if (uris.length !== 1) {
    reject(
      'no-site-identity',
      `certificate "${subject}" must name exactly one site in a ${SITE_URI_PREFIX}<id> subjectAltName URI; it names ${uris.length}`,
    );
  }
  const siteId = uris[0]!.slice(SITE_URI_PREFIX.length);
  const parsed = siteIdSchema.safeParse(siteId);
  if (!parsed.success) {
    reject('no-site-identity', `certificate "${subject}" names site "${siteId}", which is not a valid site id`);
  }
  const commonNames = cert.lib.subjectName.getField('CN');
  if (commonNames.length !== 1 || commonNames[0] !== siteId) {
    reject('no-site-identity', `certificate "${subject}" has subject CN ${JSON.stringify(commonNames)} but SAN site id "${siteId}"`);
  }
  return siteId;
}

/**
 * Checks, in order: both certificates parse; the CA is a valid self-signed root; the certificate is not itself
 * self-signed; it was issued and signed by this CA; it is valid at `at`; it is an end-entity certificate; it
 * carries the extended key usage for `purpose`; and, for a client, a consistent site identity.
 * Throws CertificateRejectedError with a code and a reason that names the certificate.
 */
export function assertCertificateTrusted(
  certificate: CertificateInput,
  ca: CertificateInput,
  options: VerifyCertificateOptions,
): VerifiedCertificate {
  const at = options.at ?? new Date();
  const authority = parseCertificate(ca, 'CA certificate');
  const cert = parseCertificate(certificate, 'certificate');
  checkAuthority(authority, at);

  const subject = cert.lib.subject;
  if (isSelfSigned(cert)) {
    reject('self-signed', `certificate "${subject}" is self-signed; it must be issued by the consortium CA "${authority.lib.subject}"`);
  }
  if (cert.node.issuer !== authority.node.subject) {
    reject('untrusted-issuer', `certificate "${subject}" was issued by "${cert.lib.issuer}", not by the consortium CA "${authority.lib.subject}"`);
  }
  if (!cert.node.checkIssued(authority.node) || !cert.node.verify(authority.node.publicKey)) {
    reject(
      'untrusted-issuer',
      `certificate "${subject}" names the consortium CA as issuer but its signature does not verify with the CA's key (issued by another CA of the same name)`,
    );
  }
  if (at < cert.lib.notBefore) {
    reject('not-yet-valid', `certificate "${subject}" is not valid before ${cert.lib.notBefore.toISOString()}`);
  }
  if (at > cert.lib.notAfter) {
    reject('expired', `certificate "${subject}" expired on ${cert.lib.notAfter.toISOString()}`);
  }
  if (cert.node.ca) {
    reject('is-ca', `certificate "${subject}" is a CA certificate; participants must present end-entity certificates`);
  }
  const purpose = PURPOSES[options.purpose];
  const usages = extendedKeyUsageOids(cert.lib);
  if (!usages.includes(purpose.oid)) {
    const has = usages.length === 0 ? 'no extended key usage' : `extended key usage ${usages.map((oid) => Object.values(PURPOSES).find((p) => p.oid === oid)?.name ?? oid).join(', ')}`;
    reject('wrong-purpose', `certificate "${subject}" has ${has}, but ${purpose.role} needs ${purpose.name}`);
  }
  return {
    subject,
    issuer: cert.lib.issuer,
    serialNumber: cert.node.serialNumber.toUpperCase(),
    fingerprint256: cert.node.fingerprint256,
    notBefore: cert.lib.notBefore,
    notAfter: cert.lib.notAfter,
    siteId: options.purpose === 'client' ? siteIdOf(cert) : null,
  };
}

/** assertCertificateTrusted as a result value, for callers that report rather than throw (TLS hooks, `doctor`). */
export function verifyCertificate(
  certificate: CertificateInput,
  ca: CertificateInput,
  options: VerifyCertificateOptions,
): CertificateVerification {
  try {
    return { ok: true, certificate: assertCertificateTrusted(certificate, ca, options) };
  } catch (error) {
    if (error instanceof CertificateRejectedError) {
      return { ok: false, code: error.code, reason: error.message };
    }
    throw error;
  }
}
