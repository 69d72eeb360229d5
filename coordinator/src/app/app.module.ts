import { Module, type DynamicModule, type OnApplicationShutdown, Inject, Injectable } from '@nestjs/common';
import { join } from 'node:path';
import { BlobStore } from '../blobs/index.js';
import type { CoordinatorConfig } from '../config/index.js';
import { FederationHandlers } from '../federation/federation.handlers.js';
import { openDatabase, type Database } from '../persistence/index.js';
import { RoundsService } from '../rounds/rounds.service.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { StudiesController } from '../studies/studies.controller.js';
import { StudiesService } from '../studies/studies.service.js';
import type { SiteIdentity } from '../federation/site-identity.js';
import { EncryptedAggregation } from '../rounds/encrypted-aggregation.js';
import { DatasetSummaries } from '../sites/dataset-summaries.js';
import { BLOB_STORE, CKKS_PUBLIC_PARAMS, COORDINATOR_CONFIG, DATABASE, SITE_IDENTITY } from './tokens.js';

/** Closes the database last, after every service that uses it has stopped (an open PGlite hangs the process). */
@Injectable()
class DatabaseLifecycle implements OnApplicationShutdown {
  constructor(@Inject(DATABASE) private readonly db: Database) {}
  async onApplicationShutdown(): Promise<void> {
    await this.db.close();
  }
}

@Module({})
export class AppModule {
  static forRoot(config: CoordinatorConfig, identity: SiteIdentity, ckksPublicParams: Uint8Array | null): DynamicModule {
    return {
      module: AppModule,
      controllers: [StudiesController],
      providers: [
        { provide: COORDINATOR_CONFIG, useValue: config },
        { provide: SITE_IDENTITY, useValue: identity },
        { provide: CKKS_PUBLIC_PARAMS, useValue: ckksPublicParams },
        EncryptedAggregation,
        {
          provide: DATABASE,
          useFactory: () => openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }),
        },
        { provide: BLOB_STORE, useFactory: () => new BlobStore(join(config.dataDir, 'blobs')) },
        DatabaseLifecycle,
        SiteSessions,
        RoundsService,
        DatasetSummaries,
        StudiesService,
        FederationHandlers,
      ],
    };
  }
}
