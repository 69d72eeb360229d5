import { findRevocation, verifyCanonical, verifyCertificate, type RevocationEntry } from '../../pki/index.js';

/**
 * Why a statement is not one the named site signed, or null when it is: the certificate is the consortium CA's for a
 * site (not revoked, valid at `at`), names that site, and its key signed the statement's canonical JSON. Key shares
 * and contribution statements both rest on this.
 */
export function siteSignatureProblem(
  statement: { siteId: string },
  signed: { signature: string; certificatePem: string },
  trust: { caPem: string; revoked: readonly RevocationEntry[]; at?: Date },
): string | null {
  const trusted = verifyCertificate(signed.certificatePem, trust.caPem, { purpose: 'client', ...(trust.at ? { at: trust.at } : {}) });
  if (!trusted.ok) return `its certificate is not one the consortium CA issued to a site (${trusted.reason})`;
  if (trusted.certificate.siteId !== statement.siteId) return `it is signed with the certificate of ${trusted.certificate.siteId ?? 'no site'}`;
  if (findRevocation(trust.revoked, trusted.certificate)) return 'its certificate is revoked';
  if (!verifyCanonical(statement, signed.signature, signed.certificatePem)) return 'its signature does not verify';
  return null;
}

/** A signed statement's JSON as it travels; null when it is not JSON (each caller says so in its own words). */
export function parseStatementJson(json: string): { value: unknown } | null {
  try {
    return { value: JSON.parse(json) as unknown };
  } catch {
    return null;
  }
}
