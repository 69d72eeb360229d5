import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootCa, federation, issueSiteCertificate, readSiteKit } from '@federa/shared';
import { parseCoordinatorConfig, revokeSite, type RunningCoordinator } from '@federa/coordinator';
import { startProvisionedCoordinator } from './support/kits.js';

/**
 * Mutual TLS is the default: the coordinator accepts only site certificates issued by the consortium CA, still
 * valid and not revoked, and takes the site's identity from the certificate alone; a site accepts only a
 * coordinator certified by the same CA.
 */
describe('mutual TLS between sites and the coordinator', () => {
  let dir: string;
  let kits: string;
  let coordinator: RunningCoordinator;
  const clients: Array<{ close(): void }> = [];

  const register = (creds: ChannelCredentials, metadata = new Metadata()) =>
    new Promise<{ siteId?: string; error?: ServiceError }>((resolve) => {
      const client = new federation.FederationServiceClient(`127.0.0.1:${coordinator.grpcPort}`, creds, {
        // Fail fast instead of retrying a handshake that can never succeed.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.ssl_target_name_override': 'localhost',
      });
      clients.push(client);
      client.register(
        { agentVersion: 'test', backend: 'none', supportedEncodings: [] },
        metadata,
        { deadline: Date.now() + 5_000 },
        (error, response) => resolve(error ? { error } : { siteId: response.siteId }),
      );
    });
  /**
   * The connection alone, without gRPC, with the same key and certificate: how the coordinator answered. A TLS alert
   * (e.g. a missing client certificate), a close right after the handshake and before any HTTP/2 frame (a
   * certificate Node's TLS layer refused: it drops the socket without an alert), or HTTP/2 (the server's SETTINGS
   * came: the certificate was taken). A server that is down or not speaking TLS gives none of these.
   */
  const tlsOutcome = (caPem: string, key?: string, cert?: string) =>
    new Promise<string>((resolve) => {
      let handshake = false;
      const socket = tlsConnect({ host: '127.0.0.1', port: coordinator.grpcPort, servername: 'localhost', ca: caPem, key, cert, ALPNProtocols: ['h2'] });
      socket.on('error', (error) => resolve(`error: ${error.message}`));
      socket.on('secureConnect', () => {
        handshake = true;
        socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      });
      socket.on('data', () => {
        resolve('http2');
        socket.destroy();
      });
      socket.on('close', () => resolve(handshake ? 'closed after the TLS handshake, before HTTP/2' : 'closed before the TLS handshake ended'));
      socket.setTimeout(5_000, () => resolve('no answer within 5 s'));
    });
  const siteCredentials = async (siteId: string, caPem?: string): Promise<ChannelCredentials> => {
    const kit = await readSiteKit(join(kits, 'sites', siteId));
    return credentials.createSsl(Buffer.from(caPem ?? kit.caPem), Buffer.from(kit.privateKeyPem), Buffer.from(kit.certificatePem));
  };
  const consortiumCa = async () => ({
    certificatePem: await readFile(join(kits, 'ca', 'ca.pem'), 'utf8'),
    privateKeyPem: await readFile(join(kits, 'ca', 'ca-key.pem'), 'utf8'),
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-mtls-'));
    ({ kits, coordinator } = await startProvisionedCoordinator(dir, ['hospital-a', 'hospital-b']));
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to start without a kit unless insecure is asked for explicitly', () => {
    expect(() => parseCoordinatorConfig({ dataDir: dir })).toThrow(/kitDir: mutual TLS needs the coordinator kit/);
  });

  it("identifies a site by its certificate, whatever name it claims", async () => {
    const spoof = new Metadata();
    spoof.set('x-federa-site-id', 'hospital-b');
    expect(await register(await siteCredentials('hospital-a'), spoof)).toEqual({ siteId: 'hospital-a' });
    expect(await register(await siteCredentials('hospital-b'))).toEqual({ siteId: 'hospital-b' });
  });

  it('refuses a connection without a client certificate', async () => {
    const kit = await readSiteKit(join(kits, 'sites', 'hospital-a'));
    const { error } = await register(credentials.createSsl(Buffer.from(kit.caPem)));
    expect(status[error?.code ?? 0]).toBe('UNAVAILABLE');
    expect(error?.details).toMatch(/alert certificate required/);
    expect(await tlsOutcome(kit.caPem)).toMatch(/^error: .*alert certificate required/);
  });

  it("refuses a self-signed certificate and another CA's certificate", async () => {
    const kit = await readSiteKit(join(kits, 'sites', 'hospital-a'));
    const stranger = await createRootCa({ commonName: 'mtls test' });
    const selfSigned = credentials.createSsl(Buffer.from(kit.caPem), Buffer.from(stranger.privateKeyPem), Buffer.from(stranger.certificatePem));
    expect(status[(await register(selfSigned)).error?.code ?? 0]).toBe('UNAVAILABLE');
    expect(await tlsOutcome(kit.caPem, stranger.privateKeyPem, stranger.certificatePem)).toBe('closed after the TLS handshake, before HTTP/2');
    const foreign = await issueSiteCertificate(stranger, { siteId: 'hospital-a' });
    const otherCa = credentials.createSsl(Buffer.from(kit.caPem), Buffer.from(foreign.privateKeyPem), Buffer.from(foreign.certificatePem));
    expect(status[(await register(otherCa)).error?.code ?? 0]).toBe('UNAVAILABLE');
    expect(await tlsOutcome(kit.caPem, foreign.privateKeyPem, foreign.certificatePem)).toBe('closed after the TLS handshake, before HTTP/2');
    // The same path with the site's own certificate reaches HTTP/2: the refusals above are the certificates'.
    expect(await tlsOutcome(kit.caPem, kit.privateKeyPem, kit.certificatePem)).toBe('http2');
  });

  it('refuses an expired certificate from the right CA', async () => {
    const ca = await consortiumCa();
    const expired = await issueSiteCertificate(ca, {
      siteId: 'hospital-a',
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      validityDays: 2,
    });
    const creds = credentials.createSsl(Buffer.from(ca.certificatePem), Buffer.from(expired.privateKeyPem), Buffer.from(expired.certificatePem));
    expect(status[(await register(creds)).error?.code ?? 0]).toBe('UNAVAILABLE');
    expect(await tlsOutcome(ca.certificatePem, expired.privateKeyPem, expired.certificatePem)).toBe('closed after the TLS handshake, before HTTP/2');
    const valid = await issueSiteCertificate(ca, { siteId: 'hospital-a' });
    expect(await tlsOutcome(ca.certificatePem, valid.privateKeyPem, valid.certificatePem)).toBe('http2');
  });

  it('refuses a revoked certificate within seconds of `federa provision revoke`, and drops its open stream, without a restart', async () => {
    const creds = await siteCredentials('hospital-b');
    expect((await register(creds)).siteId).toBe('hospital-b');
    // hospital-b holds its task stream open and sends nothing more.
    const client = new federation.FederationServiceClient(`127.0.0.1:${coordinator.grpcPort}`, creds, { 'grpc.ssl_target_name_override': 'localhost' });
    clients.push(client);
    const dropped = new Promise<ServiceError>((resolve) => client.streamTasks({}, new Metadata()).on('error', resolve));
    await expect.poll(() => coordinator.connectedSites()).toContain('hospital-b');
    await revokeSite({ outDir: kits, siteId: 'hospital-b', reason: 'laptop stolen' });
    const ended = await dropped;
    expect(status[ended.code]).toBe('PERMISSION_DENIED');
    expect(ended.details).toMatch(/of site hospital-b was revoked/);
    expect(coordinator.connectedSites()).not.toContain('hospital-b');
    await expect
      .poll(async () => (await register(creds)).error?.details ?? 'accepted', { timeout: 10_000, interval: 500 })
      .toMatch(/of site hospital-b was revoked \(laptop stolen\)/);
    const { error } = await register(creds);
    expect(status[error?.code ?? 0]).toBe('PERMISSION_DENIED');
    // Other sites are unaffected.
    expect((await register(await siteCredentials('hospital-a'))).siteId).toBe('hospital-a');
  });

  it("makes a site refuse a coordinator that is not certified by the consortium CA", async () => {
    const stranger = await createRootCa({ commonName: 'impostor trust' });
    const { error } = await register(await siteCredentials('hospital-a', stranger.certificatePem));
    expect(status[error?.code ?? 0]).toBe('UNAVAILABLE');
    expect(error?.details).toMatch(/self-signed certificate in certificate chain/);
  });
});
