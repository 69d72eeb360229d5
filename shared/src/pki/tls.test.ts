import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, extractSiteId, issueServerCertificate, issueSiteCertificate, type IssuedCertificate } from './index.js';

// The point of the PKI is mutual TLS between sites and the coordinator: prove OpenSSL (through Node's tls,
// which grpc-js uses) accepts these certificates end to end, and refuses a client from another CA.
let root: IssuedCertificate;
let server: ReturnType<typeof createServer>;
let port: number;
const seen: { authorized: boolean; siteId: string | null }[] = [];
const refused: string[] = [];

beforeAll(async () => {
  root = await createRootCa({ organization: 'TLS test' });
  const ca = { certificatePem: root.certificatePem, privateKeyPem: root.privateKeyPem };
  const serverCert = await issueServerCertificate(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  server = createServer(
    { cert: serverCert.certificatePem, key: serverCert.privateKeyPem, ca: root.certificatePem, requestCert: true, rejectUnauthorized: true },
    (socket: TLSSocket) => {
      const peer = socket.getPeerCertificate();
      seen.push({ authorized: socket.authorized, siteId: extractSiteId(peer.raw) });
      socket.end('hello');
    },
  );
  server.on('tlsClientError', (error: Error) => refused.push(error.message));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

afterAll(() => {
  server.close();
});

/** What the client received; under TLS 1.3 a refused client certificate shows up as an alert or a closed socket. */
async function handshake(client: IssuedCertificate): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: root.certificatePem, cert: client.certificatePem, key: client.privateKeyPem });
  socket.setEncoding('utf8');
  let data = '';
  socket.on('data', (chunk: string) => (data += chunk));
  await new Promise<void>((resolve) => {
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
  });
  return data;
}

describe('mutual TLS with provisioned certificates', () => {
  it('lets a site with a certificate from the consortium CA in, identified by its site id', async () => {
    const site = await issueSiteCertificate({ certificatePem: root.certificatePem, privateKeyPem: root.privateKeyPem }, { siteId: 'hospital-a' });
    expect(await handshake(site)).toBe('hello');
    expect(seen).toEqual([{ authorized: true, siteId: 'hospital-a' }]);
  });

  it('refuses a client certificate from another CA', async () => {
    const other = await createRootCa();
    const stranger = await issueSiteCertificate({ certificatePem: other.certificatePem, privateKeyPem: other.privateKeyPem }, { siteId: 'hospital-a' });
    expect(await handshake(stranger)).toBe('');
    expect(seen).toHaveLength(1);
    // The server saw a failed handshake, never a connection.
    expect(refused).toHaveLength(1);
  });
});
