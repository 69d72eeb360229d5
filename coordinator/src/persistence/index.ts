export {
  openDatabase,
  migrate,
  parsePostgresUrl,
  type Database,
  type DatabaseConfig,
  type OpenDatabaseOptions,
  type PostgresTarget,
} from './database.js';
export {
  applyMigrations,
  loadMigrations,
  migrationChecksum,
  checksumMatches,
  MigrationError,
  DEFAULT_MIGRATIONS_DIR,
  MIGRATIONS_TABLE,
  PRISMA_MIGRATE_LOCK_KEY,
  type Migration,
  type MigrateOptions,
  type MigrationErrorCode,
  type MigrationReport,
  type SqlConnection,
} from './migrator.js';
export { DataDirLockedError } from './data-dir-lock.js';
// The generated client's model types and enums, so callers never import from ./generated directly.
export { PrismaClient, Prisma } from './generated/client.js';
export type { Study, Site, Round, ModelVersion, UpdateReceipt, RoundMetric } from './generated/client.js';
export { StudyStatus, RoundStatus, MetricKind } from './generated/client.js';
