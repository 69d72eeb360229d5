import { isIP } from 'node:net';
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls';
import type { SiteKit } from '@federa/shared';

/** The names a certificate is valid for, from its subjectAltName extension. */
export interface CertificateNames {
  dns: string[];
  ips: string[];
}

/**
 * What a bare TLS handshake with the coordinator showed, before any gRPC: grpc-js reports every TLS failure as
 * UNAVAILABLE, which reads like a firewall problem even when the certificate simply does not name the address.
 */
export type TlsProbe =
  | { kind: 'connected'; expected: string; names: CertificateNames; nameError: string | null }
  /** The certificate does not chain to the kit's CA, or the TLS handshake was refused (a wrong port, a plaintext server). */
  | { kind: 'tls-failed'; message: string; untrusted: boolean }
  | { kind: 'unreachable'; message: string };

/** OpenSSL's verification codes for a certificate that is not the consortium's (or not valid now). */
const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

export function certificateNames(certificate: Pick<PeerCertificate, 'subjectaltname'>): CertificateNames {
  const names: CertificateNames = { dns: [], ips: [] };
  for (const entry of (certificate.subjectaltname ?? '').split(',').map((s) => s.trim())) {
    if (entry.startsWith('DNS:')) names.dns.push(entry.slice(4));
    else if (entry.startsWith('IP Address:')) names.ips.push(entry.slice(11));
  }
  return names;
}

export function describeNames(names: CertificateNames): string {
  const all = [...names.dns.map((n) => `DNS ${n}`), ...names.ips.map((n) => `IP ${n}`)];
  return all.length === 0 ? 'no names' : all.join(', ');
}

/**
 * One TLS handshake as the agent makes it (the kit's CA, certificate and key), recording the coordinator's
 * certificate names and whether they cover `serverName ?? host`, instead of failing on a mismatch.
 */
export function probeCoordinatorTls(address: string, kit: SiteKit, serverName: string | undefined, timeoutMs = 5_000): Promise<TlsProbe> {
  const { host, port } = splitAddress(address);
  const expected = serverName ?? host;
  return new Promise((resolveProbe) => {
    let nameError: string | null = null;
    let peer: PeerCertificate | undefined;
    let settled = false;
    const settle = (probe: TlsProbe): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolveProbe(probe);
    };
    const socket = connect({
      host,
      port,
      ca: kit.caPem,
      cert: kit.certificatePem,
      key: kit.privateKeyPem,
      // SNI carries DNS names only.
      ...(isIP(expected) ? {} : { servername: expected }),
      ALPNProtocols: ['h2'],
      checkServerIdentity: (_host, certificate) => {
        peer = certificate;
        nameError = checkServerIdentity(expected, certificate)?.message ?? null;
        return undefined;
      },
    });
    socket.setTimeout(timeoutMs, () => settle({ kind: 'unreachable', message: `no TLS answer from ${address} within ${timeoutMs / 1000} s` }));
    socket.once('secureConnect', () => {
      settle({ kind: 'connected', expected, names: certificateNames(peer ?? socket.getPeerCertificate()), nameError });
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      const code = error.code ?? '';
      if (UNTRUSTED_CODES.has(code)) settle({ kind: 'tls-failed', untrusted: true, message: `${error.message} (${code})` });
      else if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS')) settle({ kind: 'tls-failed', untrusted: false, message: error.message });
      else settle({ kind: 'unreachable', message: `${address}: ${error.message}` });
    });
  });
}
