import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import { createLogger, type Logger } from '@federa/shared';
import { PrismaClient } from './generated/client.js';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';
import {
  applyMigrations,
  assertSchemaName,
  quoteIdentifier,
  type MigrateOptions,
  type MigrationReport,
  type SqlConnection,
} from './migrator.js';

export interface DatabaseConfig {
  /**
   * PostgreSQL connection string (`postgres://` or `postgresql://`). Prisma's `?schema=name`
   * parameter selects the schema, as with the Prisma CLI. Absent: the embedded PGlite database.
   */
  databaseUrl?: string | undefined;
  /** Coordinator data folder; PGlite keeps its files in `<dataDir>/db`. */
  dataDir: string;
}

export interface OpenDatabaseOptions extends Pick<MigrateOptions, 'migrationsDir' | 'lockTimeoutMs'> {
  logger?: Logger;
}

export interface Database {
  readonly prisma: PrismaClient;
  readonly kind: 'pglite' | 'postgresql';
  /** What the start-up migration did. */
  readonly migrations: MigrationReport;
  /** Disconnects Prisma and closes PGlite / the pg pool; an open PGlite keeps the process alive. Idempotent. */
  close(): Promise<void>;
}

/** A PostgreSQL URL split into what node-postgres understands and Prisma's `schema` parameter. */
export interface PostgresTarget {
  /** The URL without `schema`, with `options=-c search_path=...` so raw SQL sees the same schema. */
  connectionString: string;
  schema: string;
}

export function parsePostgresUrl(databaseUrl: string): PostgresTarget {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    // Never echo the URL: it usually carries a password.
    throw new Error('databaseUrl is not a valid URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error(`databaseUrl must be a postgres:// or postgresql:// URL, not ${url.protocol}//`);
  }
  const schema = url.searchParams.get('schema') ?? 'public';
  assertSchemaName(schema);
  url.searchParams.delete('schema');
  const searchPath = `-c search_path=${quoteIdentifier(schema)}`;
  const options = url.searchParams.get('options');
  url.searchParams.set('options', options ? `${options} ${searchPath}` : searchPath);
  return { connectionString: url.toString(), schema };
}

/** Opens the configured database, applies pending migrations, and returns a ready Prisma client. */
export async function openDatabase(config: DatabaseConfig, options: OpenDatabaseOptions = {}): Promise<Database> {
  const log = options.logger ?? createLogger('persistence');
  return config.databaseUrl
    ? openPostgres(parsePostgresUrl(config.databaseUrl), options, log)
    : openPglite(config.dataDir, options, log);
}

/**
 * Applies pending migrations without keeping a client open (the `db:migrate` script), with the
 * same database selection as openDatabase.
 */
export async function migrate(config: DatabaseConfig, options: OpenDatabaseOptions = {}): Promise<MigrationReport> {
  const log = options.logger ?? createLogger('persistence');
  if (config.databaseUrl) {
    return migratePostgres(parsePostgresUrl(config.databaseUrl), options, log);
  }
  const { pglite, lock } = await startPglite(config.dataDir);
  try {
    return await applyMigrations(pgliteConnection(pglite), { ...options, logger: log });
  } finally {
    await pglite.close();
    await lock.release();
  }
}

async function openPostgres(target: PostgresTarget, options: OpenDatabaseOptions, log: Logger): Promise<Database> {
  const migrations = await migratePostgres(target, options, log);
  // Prisma qualifies table names with `schema`; the pool's search_path covers $queryRaw as well.
  const adapter = new PrismaPg(
    // A database host that drops packets must not hold a call forever: connecting gives up after 10 s (the site
    // retries). The name shows in pg_stat_activity, so a DBA can tell the coordinator's sessions apart.
    { connectionString: target.connectionString, connectionTimeoutMillis: 10_000, application_name: 'federa-coordinator' },
    { schema: target.schema, onPoolError: (error) => log.warn({ reason: error.message }, 'an idle PostgreSQL connection failed; the pool opens a new one') },
  );
  const prisma = new PrismaClient({ adapter });
  try {
    await prisma.$connect();
  } catch (error) {
    await prisma.$disconnect().catch(() => undefined);
    throw error;
  }
  log.info({ kind: 'postgresql', schema: target.schema }, 'database ready');
  return {
    prisma,
    kind: 'postgresql',
    migrations,
    close: once(async () => {
      // $disconnect disposes the adapter, which ends the pool it created.
      await prisma.$disconnect();
    }),
  };
}

async function migratePostgres(target: PostgresTarget, options: OpenDatabaseOptions, log: Logger): Promise<MigrationReport> {
  // A dedicated session: the advisory lock and SET search_path are per connection, which a pool cannot promise.
  const client = new pg.Client({ connectionString: target.connectionString });
  // Without a listener a dropped connection would be an uncaught 'error' event; the failing query reports it.
  client.on('error', (error) => log.warn({ err: error }, 'migration connection failed'));
  await client.connect();
  try {
    return await applyMigrations(pgClientConnection(client), { ...options, schema: target.schema, logger: log });
  } finally {
    await client.end();
  }
}

async function openPglite(dataDir: string, options: OpenDatabaseOptions, log: Logger): Promise<Database> {
  const { pglite, lock, dir } = await startPglite(dataDir);
  let prisma: PrismaClient | undefined;
  try {
    const migrations = await applyMigrations(pgliteConnection(pglite), { ...options, logger: log });
    prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) });
    await prisma.$connect();
    log.info({ kind: 'pglite', dir }, 'database ready');
    const client = prisma;
    return {
      prisma: client,
      kind: 'pglite',
      migrations,
      close: once(async () => {
        try {
          await client.$disconnect();
        } finally {
          // PGlite flushes to disk on close; the lock goes last so nobody opens a half-closed folder.
          await pglite.close();
          await lock.release();
        }
      }),
    };
  } catch (error) {
    await prisma?.$disconnect().catch(() => undefined);
    await pglite.close().catch(() => undefined);
    await lock.release();
    throw error;
  }
}

async function startPglite(dataDir: string): Promise<{ pglite: PGlite; lock: DataDirLock; dir: string }> {
  const dir = join(dataDir, 'db');
  await mkdir(dir, { recursive: true });
  // PGlite is single-process: a second process on the same folder would corrupt it, so refuse that first.
  const lock = await acquireDataDirLock(join(dataDir, 'db.lock'));
  try {
    const pglite = new PGlite(dir);
    await pglite.waitReady;
    return { pglite, lock, dir };
  } catch (error) {
    await lock.release();
    throw error;
  }
}

function pgliteConnection(pglite: PGlite): SqlConnection {
  return {
    async query<Row extends Record<string, unknown>>(sql: string, params: readonly unknown[] = []) {
      const result = await pglite.query<Row>(sql, [...params]);
      return result.rows;
    },
    async exec(sql: string) {
      await pglite.exec(sql);
    },
  };
}

function pgClientConnection(client: pg.Client): SqlConnection {
  return {
    async query<Row extends Record<string, unknown>>(sql: string, params: readonly unknown[] = []) {
      const result = await client.query<Row>(sql, [...params]);
      return result.rows;
    },
    async exec(sql: string) {
      // No parameters: node-postgres uses the simple protocol, which accepts multi-statement scripts.
      await client.query(sql);
    },
  };
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
