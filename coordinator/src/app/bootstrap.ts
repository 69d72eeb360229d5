import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { ServerCredentials } from '@grpc/grpc-js';
import { NestFactory } from '@nestjs/core';
import { createLogger } from '@federa/shared';
import type { CoordinatorConfig } from '../config/index.js';
import { ConfigError } from '../config/index.js';
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
  if (!config.insecure) {
    throw new ConfigError(
      'mutual TLS needs a coordinator kit from `federa provision`, which this build does not have yet; ' +
        'start with --insecure (FEDERA_INSECURE=1) for local development',
    );
  }
  log.warn('gRPC is running WITHOUT TLS (insecure development mode): sites are trusted by the name they send');
  const app = await NestFactory.create(AppModule.forRoot(config), {
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
        credentials: ServerCredentials.createInsecure(),
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
