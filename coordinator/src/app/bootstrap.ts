import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { ServerCredentials } from '@grpc/grpc-js';
import { NestFactory } from '@nestjs/core';
import { createLogger, KitError, readCoordinatorKit, type Logger } from '@federa/shared';
import type { CoordinatorConfig } from '../config/index.js';
import { ConfigError } from '../config/index.js';
import { CertificateSiteIdentity, MetadataSiteIdentity, type SiteIdentity } from '../federation/site-identity.js';
import { FederationHandlers } from '../federation/federation.handlers.js';
import { FederationGrpcTransport } from '../federation/grpc-transport.js';
import { HttpErrorFilter } from '../http/error-filter.js';
import { PinoNestLogger } from '../logging/nest-logger.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { AppModule } from './app.module.js';

export interface RunningCoordinator {
  httpPort: number;
  grpcPort: number;
  close(): Promise<void>;
}

/** Starts the hybrid app: REST on httpPort, the gRPC federation service on grpcPort, one process. */
export async function startCoordinator(config: CoordinatorConfig): Promise<RunningCoordinator> {
  const log = createLogger('coordinator');
  const transport = await transportSecurity(config, log);
  const app = await NestFactory.create(AppModule.forRoot(config, transport.identity, transport.ckksPublicParams), {
    logger: new PinoNestLogger(createLogger('nest')),
    bodyParser: true,
  });
  app.useGlobalFilters(new HttpErrorFilter());
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
  await app.listen(config.httpPort, config.host);
  const httpPort = (app.getHttpServer().address() as AddressInfo).port;
  log.info({ httpPort, grpcPort, dataDir: config.dataDir, database: config.databaseUrl ? 'postgresql' : 'pglite' }, 'coordinator ready');
  if (config.readyFile) await writeFile(config.readyFile, JSON.stringify({ httpPort, grpcPort, pid: process.pid }));

  let closing: Promise<void> | undefined;
  return {
    httpPort,
    grpcPort,
    close: () => {
      closing ??= (async () => {
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
): Promise<{ credentials: ServerCredentials; identity: SiteIdentity; ckksPublicParams: Uint8Array | null }> {
  if (config.insecure || !config.kitDir) {
    log.warn('gRPC is running WITHOUT TLS (insecure development mode): sites are trusted by the name they send');
    return { credentials: ServerCredentials.createInsecure(), identity: new MetadataSiteIdentity(), ckksPublicParams: null };
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
  return { credentials, identity: new CertificateSiteIdentity(kit), ckksPublicParams: kit.ckksPublicParams };
}
