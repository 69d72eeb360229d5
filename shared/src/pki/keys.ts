import { createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.js';

/** The two NIST curves every TLS stack (OpenSSL, BoringSSL, grpc-js through Node) accepts for ECDSA certificates. */
export type EcCurve = 'P-256' | 'P-384';

const HASH_FOR_CURVE: Record<EcCurve, 'SHA-256' | 'SHA-384'> = { 'P-256': 'SHA-256', 'P-384': 'SHA-384' };
const CURVE_FROM_OPENSSL: Record<string, EcCurve> = { prime256v1: 'P-256', secp384r1: 'P-384' };

type WebCryptoKey = webcrypto.CryptoKey;
export interface EcKeyPair {
  publicKey: WebCryptoKey;
  privateKey: WebCryptoKey;
}

/** Signature algorithm matched to the signer's curve, so the hash is never the weak link of the signature. */
export function signingAlgorithmFor(curve: EcCurve): { name: 'ECDSA'; hash: 'SHA-256' | 'SHA-384' } {
  return { name: 'ECDSA', hash: HASH_FOR_CURVE[curve] };
}

export async function generateEcKeyPair(curve: EcCurve): Promise<EcKeyPair> {
  // Extractable because the private key is written to a kit file right after issuance.
  return webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify']);
}

/** PKCS#8 PEM ("BEGIN PRIVATE KEY"): what grpc-js, Node's tls and OpenSSL all read without conversion. */
export async function privateKeyToPem(key: WebCryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
}

function parsePrivateKey(pem: string, what: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new PkiError(`${what} is not a readable PEM private key: ${(error as Error).message}`);
  }
}

/** The curve of an EC private key; anything else (RSA, Ed25519, other curves) is refused by name. */
export function curveOfPrivateKey(pem: string, what = 'private key'): EcCurve {
  const key = parsePrivateKey(pem, what);
  const curveName = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  const curve = curveName === undefined ? undefined : CURVE_FROM_OPENSSL[curveName];
  if (curve === undefined) {
    const type = key.asymmetricKeyType === 'ec' ? `EC ${curveName ?? 'unknown curve'}` : (key.asymmetricKeyType ?? 'unknown');
    throw new PkiError(`${what} is a ${type} key; Federa uses ECDSA P-256 or P-384 keys`);
  }
  return curve;
}

/** Imports a PEM (PKCS#8 or SEC1) EC private key for signing certificates. */
export async function importSigningKey(pem: string, what = 'private key'): Promise<{ key: WebCryptoKey; curve: EcCurve }> {
  const curve = curveOfPrivateKey(pem, what);
  const der = parsePrivateKey(pem, what).export({ type: 'pkcs8', format: 'der' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: curve }, false, ['sign']);
  return { key, curve };
}

/** DER SubjectPublicKeyInfo of the public half of a private key, for comparing a key with a certificate. */
export function publicKeyDerOfPrivateKey(pem: string, what = 'private key'): Buffer {
  return createPublicKey(parsePrivateKey(pem, what)).export({ type: 'spki', format: 'der' });
}
