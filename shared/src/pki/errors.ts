/** Anything the PKI refuses to do (bad options, a CA key that does not match its certificate, ...). */
export class PkiError extends Error {
  override readonly name: string = 'PkiError';
}

/**
 * Why a certificate was not accepted. The codes are stable so callers (the gRPC TLS layer, `doctor`) can map
 * them to statuses or advice; the message says what exactly was wrong with which certificate.
 */
export type CertificateRejectionCode =
  | 'malformed'
  | 'bad-ca'
  | 'self-signed'
  | 'untrusted-issuer'
  | 'not-yet-valid'
  | 'expired'
  | 'is-ca'
  | 'wrong-purpose'
  | 'no-site-identity';

export class CertificateRejectedError extends PkiError {
  override readonly name = 'CertificateRejectedError';

  constructor(
    readonly code: CertificateRejectionCode,
    message: string,
  ) {
    super(message);
  }
}
