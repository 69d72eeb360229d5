import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { ServerCredentials } from '@grpc/grpc-js';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import helmet from 'helmet';
import { createLogger, KitError, MAX_STUDY_FILE_BYTES, ownerOnlyDir, readCoordinatorKit, type Logger } from '@federa/shared';
import { AuditLog, signerFromKit, type CoordinatorSigner } from '../audit/audit-log.js';
import { routeTable, type RouteDescription } from '../auth/route-table.js';
import type { Role } from '../auth/roles.js';
import { Tokens, type IssuedToken } from '../auth/tokens.js';
import { Settings } from '../settings/settings.js';
import type { CoordinatorConfig } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import { CertificateSiteIdentity, MetadataSiteIdentity, type SiteIdentity } from '../federation/site-identity.js';
import { FederationHandlers } from '../federation/federation.handlers.js';
import { FederationGrpcTransport } from '../federation/grpc-transport.js';
import { HttpErrorFilter } from '../http/error-filter.js';
import { PinoNestLogger } from '../logging/nest-logger.js';
import { serveOpenApi } from '../openapi/index.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { RoundsService } from '../rounds/rounds.service.js';
import { AppModule, CONTROLLERS } from './app.module.js';

export interface RunningCoordinator {
  httpPort: number;
  grpcPort: number;
  /** The sites connected now (task stream open, heartbeats on time). */
  connectedSites(): string[];
  /** Every REST route the server serves, with the roles it declares (null: none, which the guard refuses). */
  routes(): RouteDescription[];
  /**
   * Issues a REST token, audited as an offline administrative action (actor `cli`). For whoever embeds the
   * coordinator in-process (tests, tools): the same power as `federa token create` on the data folder.
   */
  issueToken(request: { name: string; role: Role; expiresInDays?: number }): Promise<IssuedToken>;
  close(): Promise<void>;
}

/** Starts the hybrid app: REST on httpPort, the gRPC federation service on grpcPort, one process. */
export async function startCoordinator(config: CoordinatorConfig): Promise<RunningCoordinator> {
  const log = createLogger('coordinator');
  const loose = await ownerOnlyDir(config.dataDir);
  if (loose) log.warn({ dir: config.dataDir, reason: loose }, 'could not make the data folder owner-only');
  const transport = await transportSecurity(config, log);
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(config, transport.identity, transport.ckksPublicParams, transport.signer),
    { logger: new PinoNestLogger(createLogger('nest')), bodyParser: false },
  );
  app.disable('x-powered-by');
  // Behind the reverse proxy the REST API is meant to sit behind, the client is in X-Forwarded-For: rate limits and
  // audit records then see the real client, not the proxy.
  app.set('trust proxy', /^[0-9]+$/.test(config.trustProxy) ? Number(config.trustProxy) : config.trustProxy);
  app.use(helmet());
  // Definitions and settings are small. A site ledger for reconciliation (JSON Lines, possibly large) is read by its
  // handler, after the caller is authenticated, not parsed for anyone who sends one.
  app.useBodyParser('json', { limit: '1mb' });
  // Study definitions may also be sent as the YAML files researchers write (`federa study create -f`, the dashboard).
  app.useBodyParser('text', { type: ['application/yaml', 'application/x-yaml', 'text/yaml'], limit: MAX_STUDY_FILE_BYTES });
  app.useGlobalFilters(new HttpErrorFilter());
  // The API's description at /api/docs, built from the controllers' own declarations (routes, roles, schemas).
  serveOpenApi(app, CONTROLLERS);
  app.enableShutdownHooks();

  let grpcPort = -1;
  app.connectMicroservice(
    {
      strategy: new FederationGrpcTransport({
        host: config.host,
        port: config.grpcPort,
        credentials: transport.credentials,
        handlers: () => app.get(FederationHandlers).implementation(),
        onBound: (port) => {
          grpcPort = port;
        },
      }),
    },
    { inheritAppConfig: true },
  );
  await app.startAllMicroservices();
  await app.listen(config.httpPort, config.httpHost ?? config.host);
  const httpPort = (app.getHttpServer().address() as AddressInfo).port;
  log.info({ httpPort, grpcPort, dataDir: config.dataDir, database: config.databaseUrl ? 'postgresql' : 'pglite' }, 'coordinator ready');
  if (config.readyFile) await writeFile(config.readyFile, JSON.stringify({ httpPort, grpcPort, pid: process.pid }));

  let closing: Promise<void> | undefined;
  const audit = app.get(AuditLog);
  const sessions = app.get(SiteSessions);
  transport.identity.onRevocations?.((entries) => {
    for (const entry of entries) {
      // A revoked site is dropped at once: its stream ends with the reason and it is assigned nothing more.
      sessions.drop(entry.siteId, `certificate ${entry.serialNumber} of site ${entry.siteId} was revoked`);
      app.get(RoundsService).siteRevoked(entry.siteId, `the certificate of site ${entry.siteId} was revoked`);
      void audit
        .append({ kind: 'site.revoked', actor: 'system', siteId: entry.siteId, details: { serialNumber: entry.serialNumber, reason: entry.reason ?? null } })
        .catch((error: unknown) => log.error({ err: error }, 'could not audit a revocation'));
    }
  });
  return {
    httpPort,
    grpcPort,
    connectedSites: () => sessions.connectedSiteIds(),
    routes: () => routeTable(app, CONTROLLERS),
    issueToken: async (request) =>
      app.get(Tokens).issue({ ...request }, 'cli', (await app.get(Settings).current()).tokenMaxLifetimeDays),
    close: () => {
      closing ??= (async () => {
        transport.identity.close?.();
        app.get(SiteSessions).closeAll();
        await app.close();
      })();
      return closing;
    },
  };
}

/** Mutual TLS from the coordinator kit, or (explicitly asked for) plaintext with self-declared site names. */
async function transportSecurity(
  config: CoordinatorConfig,
  log: Logger,
): Promise<{ credentials: ServerCredentials; identity: SiteIdentity; ckksPublicParams: Uint8Array | null; signer: CoordinatorSigner | null }> {
  if (config.insecure || !config.kitDir) {
    log.warn('gRPC is running WITHOUT TLS (insecure development mode): sites are trusted by the name they send');
    return { credentials: ServerCredentials.createInsecure(), identity: new MetadataSiteIdentity(), ckksPublicParams: null, signer: null };
  }
  let kit;
  try {
    kit = await readCoordinatorKit(config.kitDir);
  } catch (error) {
    if (error instanceof KitError) throw new ConfigError(`coordinator kit ${config.kitDir}: ${error.message}`);
    throw error;
  }
  for (const warning of kit.warnings) log.warn({ kit: config.kitDir }, warning);
  log.info(
    { consortium: kit.manifest.consortium, certificate: kit.manifest.certificate.fingerprint256, revoked: kit.revoked.length },
    'mutual TLS on: only certificates from the consortium CA are accepted',
  );
  const credentials = ServerCredentials.createSsl(
    Buffer.from(kit.caPem),
    [{ cert_chain: Buffer.from(kit.certificatePem), private_key: Buffer.from(kit.privateKeyPem) }],
    true,
  );
  return { credentials, identity: new CertificateSiteIdentity(kit), ckksPublicParams: kit.ckksPublicParams, signer: signerFromKit(kit) };
}
