import { createPrivateKey, sign, verify, X509Certificate } from 'node:crypto';
import { canonicalJson } from '../study/canonical-json.js';
import { curveOfPrivateKey } from './keys.js';
import { PkiError } from './errors.js';

/**
 * Signatures over canonical JSON with a participant's ECDSA key from its kit: audit checkpoints, audit exports
 * and update receipts. The hash follows the curve (P-256: SHA-256, P-384: SHA-384), as for certificates, and the
 * signature is DER, base64: what OpenSSL's `dgst -verify` reads.
 */
const HASH_OF_CURVE: Record<string, 'sha256' | 'sha384'> = { prime256v1: 'sha256', secp384r1: 'sha384' };

export function signCanonical(value: unknown, privateKeyPem: string): string {
  curveOfPrivateKey(privateKeyPem, 'signing key');
  const key = createPrivateKey(privateKeyPem);
  const hash = HASH_OF_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'sha256';
  return sign(hash, Buffer.from(canonicalJson(value), 'utf8'), key).toString('base64');
}

/** True when `signatureBase64` is the certificate's key's signature over `value`; false for anything else. */
export function verifyCanonical(value: unknown, signatureBase64: string, certificatePem: string): boolean {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificatePem);
  } catch (error) {
    throw new PkiError(`signing certificate is not a readable X.509 certificate: ${(error as Error).message}`);
  }
  const key = certificate.publicKey;
  const hash = HASH_OF_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''];
  if (key.asymmetricKeyType !== 'ec' || !hash) return false;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signatureBase64)) return false;
  try {
    return verify(hash, Buffer.from(canonicalJson(value), 'utf8'), key, Buffer.from(signatureBase64, 'base64'));
  } catch {
    return false;
  }
}
