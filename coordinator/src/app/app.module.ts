import { Module, type DynamicModule, type OnApplicationShutdown, Inject, Injectable } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerGuard, ThrottlerModule } from '@nestjs/throttler';
import { join } from 'node:path';
import { AuditController } from '../audit/audit.controller.js';
import { AuditLog, type CoordinatorSigner } from '../audit/audit-log.js';
import { AuditCheckpoints } from '../audit/checkpoints.js';
import { AccessGuard } from '../auth/access.guard.js';
import { Tokens } from '../auth/tokens.js';
import { TokensController } from '../auth/tokens.controller.js';
import { BlobStore, PartialUploads } from '../blobs/index.js';
import type { CoordinatorConfig } from '../config/index.js';
import { FederationHandlers } from '../federation/federation.handlers.js';
import { HealthController } from '../health/health.controller.js';
import { OpenApiController } from '../openapi/index.js';
import { openDatabase, type Database } from '../persistence/index.js';
import { Aggregator } from '../rounds/aggregator.js';
import { RoundsService } from '../rounds/rounds.service.js';
import { SiteReports } from '../rounds/site-reports.js';
import { StudyLocks } from '../rounds/study-locks.js';
import { KeyEpochs } from '../multiparty/index.js';
import { UploadReceiver } from '../rounds/upload-receiver.js';
import { SiteSessions } from '../sessions/site-sessions.js';
import { Settings } from '../settings/settings.js';
import { SettingsController } from '../settings/settings.controller.js';
import { StudiesController } from '../studies/studies.controller.js';
import { StudiesService } from '../studies/studies.service.js';
import { StudyEventsController } from '../studies/study-events.controller.js';
import type { SiteIdentity } from '../federation/site-identity.js';
import { EncryptedAggregation } from '../rounds/encrypted-aggregation.js';
import { DatasetSummaries } from '../sites/dataset-summaries.js';
import { SiteActivityService, SitesController } from '../sites/index.js';
import { DashboardController } from '../dashboard/index.js';
import { CoordinatorMetrics, MetricsController } from '../metrics/index.js';
import { BLOB_STORE, CKKS_PUBLIC_PARAMS, COORDINATOR_CONFIG, COORDINATOR_SIGNER, DATABASE, SITE_IDENTITY } from './tokens.js';

/** Every REST controller: the route table (and its role matrix test) is built from these. */
export const CONTROLLERS = [StudiesController, StudyEventsController, TokensController, SettingsController, AuditController, HealthController, MetricsController, SitesController, DashboardController, OpenApiController] as const;

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
  static forRoot(
    config: CoordinatorConfig,
    identity: SiteIdentity,
    ckksPublicParams: Uint8Array | null,
    signer: CoordinatorSigner | null,
  ): DynamicModule {
    return {
      module: AppModule,
      imports: [ThrottlerModule.forRoot([{ ttl: 60_000, limit: config.rateLimitPerMinute }])],
      controllers: [...CONTROLLERS],
      providers: [
        { provide: COORDINATOR_CONFIG, useValue: config },
        { provide: SITE_IDENTITY, useValue: identity },
        { provide: CKKS_PUBLIC_PARAMS, useValue: ckksPublicParams },
        { provide: COORDINATOR_SIGNER, useValue: signer },
        EncryptedAggregation,
        {
          provide: DATABASE,
          useFactory: () => openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }),
        },
        { provide: BLOB_STORE, useFactory: () => new BlobStore(join(config.dataDir, 'blobs')) },
        { provide: PartialUploads, useFactory: (blobs: BlobStore) => new PartialUploads(blobs), inject: [BLOB_STORE] },
        { provide: AuditLog, useFactory: (db: Database, s: CoordinatorSigner | null) => new AuditLog(db, s), inject: [DATABASE, COORDINATOR_SIGNER] },
        { provide: Tokens, useFactory: (db: Database, audit: AuditLog) => new Tokens(db, audit), inject: [DATABASE, AuditLog] },
        { provide: Settings, useFactory: (db: Database, audit: AuditLog) => new Settings(db, audit), inject: [DATABASE, AuditLog] },
        // Rate limiting first, so a flood of bad tokens is cut off before each one is looked up and audited.
        { provide: APP_GUARD, useClass: ThrottlerGuard },
        { provide: APP_GUARD, useClass: AccessGuard },
        AuditCheckpoints,
        DatabaseLifecycle,
        SiteSessions,
        CoordinatorMetrics,
        StudyLocks,
        KeyEpochs,
        Aggregator,
        RoundsService,
        UploadReceiver,
        SiteReports,
        DatasetSummaries,
        SiteActivityService,
        StudiesService,
        FederationHandlers,
      ],
    };
  }
}
