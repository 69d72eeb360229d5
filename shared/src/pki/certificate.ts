import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { CertificateRejectedError } from './errors.js';
import { publicKeyDerOfPrivateKey } from './keys.js';
import { x509 } from './x509.js';

/** A certificate as PEM text or DER bytes (what `tls.TLSSocket#getPeerCertificate().raw` gives). */
export type CertificateInput = string | Uint8Array;

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_NAMES: Record<string, string> = { [EKU_SERVER_AUTH]: 'serverAuth', [EKU_CLIENT_AUTH]: 'clientAuth' };

/**
 * Both views of one certificate: Node's (OpenSSL: signatures, fingerprints, issuer checks) and
 * @peculiar/x509's (typed access to extensions Node does not expose: SAN URIs, key usage bits).
 */
export interface ParsedCertificate {
  node: NodeX509Certificate;
  lib: x509.X509Certificate;
}

export function parseCertificate(input: CertificateInput, what = 'certificate'): ParsedCertificate {
  let node: NodeX509Certificate;
  try {
    node = new NodeX509Certificate(typeof input === 'string' ? input : Buffer.from(input));
  } catch (error) {
    throw new CertificateRejectedError('malformed', `${what} is not a readable X.509 certificate: ${(error as Error).message}`);
  }
  try {
    return { node, lib: new x509.X509Certificate(new Uint8Array(node.raw)) };
  } catch (error) {
    throw new CertificateRejectedError('malformed', `${what} could not be decoded: ${(error as Error).message}`);
  }
}

export interface CertificateDetails {
  subject: string;
  issuer: string;
  commonName: string | null;
  /** Upper-case hex, as OpenSSL and Node print it. */
  serialNumber: string;
  /** SHA-256 of the DER certificate, colon-separated upper-case hex: the same string as Node's `fingerprint256`. */
  fingerprint256: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  dnsNames: string[];
  ipAddresses: string[];
  uris: string[];
  /** Extended key usages by name where known (serverAuth, clientAuth), else by OID; empty when the extension is absent. */
  extendedKeyUsages: string[];
}

function subjectAltNames(lib: x509.X509Certificate, what: string): { type: string; value: string }[] {
  try {
    return lib.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  } catch (error) {
    throw new CertificateRejectedError('malformed', `${what} has an unreadable subjectAltName: ${(error as Error).message}`);
  }
}

export function extendedKeyUsageOids(lib: x509.X509Certificate): string[] {
  const extension = lib.getExtension(x509.ExtendedKeyUsageExtension);
  return extension === null ? [] : extension.usages.map(String);
}

export function describeParsed(parsed: ParsedCertificate, what = 'certificate'): CertificateDetails {
  const { node, lib } = parsed;
  const names = subjectAltNames(lib, what);
  const pick = (type: string): string[] => names.filter((name) => name.type === type).map((name) => name.value);
  return {
    subject: lib.subject,
    issuer: lib.issuer,
    commonName: lib.subjectName.getField('CN')[0] ?? null,
    serialNumber: node.serialNumber.toUpperCase(),
    fingerprint256: node.fingerprint256,
    notBefore: lib.notBefore,
    notAfter: lib.notAfter,
    isCa: node.ca,
    dnsNames: pick('dns'),
    ipAddresses: pick('ip'),
    uris: pick('url'),
    extendedKeyUsages: extendedKeyUsageOids(lib).map((oid) => EKU_NAMES[oid] ?? oid),
  };
}

/** Decoded fields of a certificate, for kits, `doctor` output and logs. Throws CertificateRejectedError('malformed'). */
export function inspectCertificate(input: CertificateInput, what = 'certificate'): CertificateDetails {
  return describeParsed(parseCertificate(input, what), what);
}

/** SHA-256 fingerprint in Node's `fingerprint256` format, so it compares directly with a TLS peer certificate's. */
export function certificateFingerprint(input: CertificateInput): string {
  return parseCertificate(input).node.fingerprint256;
}

/** Whether a PEM private key is the one the certificate was issued for (a kit with mismatched files cannot do TLS). */
export function keyMatchesCertificate(certificate: CertificateInput, privateKeyPem: string): boolean {
  const { node } = parseCertificate(certificate);
  const certificateKey = node.publicKey.export({ type: 'spki', format: 'der' });
  return certificateKey.equals(publicKeyDerOfPrivateKey(privateKeyPem));
}
