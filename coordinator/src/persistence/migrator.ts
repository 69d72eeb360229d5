import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger, type Logger } from '@federa/shared';

/**
 * Applies the versioned SQL migrations in prisma/migrations and records them in `_prisma_migrations`
 * exactly as `prisma migrate deploy` does (same table, same columns, same checksums, same advisory
 * lock), so a site that has Prisma's schema-engine binary can point the standard CLI at the same
 * database. We do not drive Prisma's engine here: the CLI downloads a native binary (impossible
 * offline) and the Wasm build is an extra 5 MB dependency that does not check checksums on deploy.
 *
 * Stricter than `migrate deploy`: each migration runs in one transaction together with its
 * bookkeeping row, and the coordinator refuses to start when an applied migration was edited or
 * when the database knows a migration this build does not ship.
 */

/** The minimal connection the migrator needs; both PGlite and a node-postgres Client fit it. */
export interface SqlConnection {
  /** One statement with `$n` parameters. */
  query<Row extends Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<Row[]>;
  /** A script of any number of statements, sent without parameters. */
  exec(sql: string): Promise<void>;
}

export interface Migration {
  /** The folder name, e.g. `20261123063132_init`; migrations apply in lexical order of names. */
  readonly name: string;
  readonly sql: string;
  /** Lower-case hex SHA-256 of migration.sql's bytes, as Prisma records it. */
  readonly checksum: string;
}

export interface MigrateOptions {
  /** Defaults to the migrations shipped with the coordinator (coordinator/prisma/migrations). */
  migrationsDir?: string;
  /**
   * PostgreSQL schema to migrate (Prisma's `?schema=` URL parameter); created when missing and
   * made the connection's search_path. Defaults to whatever the connection's search_path resolves to.
   */
  schema?: string;
  /** How long to wait for another migrator (or `prisma migrate`) holding the lock. Default 60 s. */
  lockTimeoutMs?: number;
  logger?: Logger;
}

export interface MigrationReport {
  /** Migrations this call applied, in order. */
  applied: string[];
  /** Migrations that were already recorded as applied. */
  alreadyApplied: string[];
}

export type MigrationErrorCode =
  | 'invalid-migrations-dir'
  | 'provider-mismatch'
  | 'lock-timeout'
  | 'no-current-schema'
  | 'schema-not-empty'
  | 'failed-migration-recorded'
  | 'unknown-migration'
  | 'checksum-mismatch'
  | 'migration-failed';

export class MigrationError extends Error {
  override readonly name = 'MigrationError';
  readonly code: MigrationErrorCode;
  constructor(code: MigrationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Prisma Migrate's advisory lock key; sharing it serialises us with `prisma migrate` too. */
export const PRISMA_MIGRATE_LOCK_KEY = 72707369;

export const MIGRATIONS_TABLE = '_prisma_migrations';

/** Byte-for-byte the DDL Prisma's schema engine runs on PostgreSQL (sql-schema-connector, postgres flavour). */
export const MIGRATIONS_TABLE_DDL = `CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);
`;

/** coordinator/prisma/migrations, from both src/persistence (tests) and dist/persistence (runtime). */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url));

const LOCK_POLL_MS = 200;
const DEFAULT_LOCK_TIMEOUT_MS = 60_000;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

export function migrationChecksum(sql: string | Uint8Array): string {
  return createHash('sha256').update(sql).digest('hex');
}

/**
 * Prisma's own rule (schema-connector checksum.rs): a script matches when any of its line-ending
 * variants does (git may rewrite them), and 64-character-less checksums are compared in the
 * unpadded hex format an old engine wrote.
 */
export function checksumMatches(sql: string, recorded: string): boolean {
  const variants = [sql, sql.replaceAll('\r\n', '\n'), sql.replaceAll('\n', '\r\n')];
  return variants.some((variant) => {
    const digest = createHash('sha256').update(variant).digest();
    const rendered =
      recorded.length !== 0 && recorded.length !== 64
        ? Array.from(digest, (byte) => byte.toString(16)).join('')
        : digest.toString('hex');
    return rendered === recorded;
  });
}

/** Reads `<dir>/<name>/migration.sql` for every migration folder, sorted by name. */
export async function loadMigrations(migrationsDir: string = DEFAULT_MIGRATIONS_DIR): Promise<Migration[]> {
  let entries;
  try {
    entries = await readdir(migrationsDir, { withFileTypes: true });
  } catch (error) {
    throw new MigrationError('invalid-migrations-dir', `cannot read the migrations folder ${migrationsDir}`, { cause: error });
  }
  let lock: string;
  try {
    lock = await readFile(join(migrationsDir, 'migration_lock.toml'), 'utf8');
  } catch (error) {
    throw new MigrationError('invalid-migrations-dir', `${migrationsDir} has no migration_lock.toml`, { cause: error });
  }
  const provider = /^\s*provider\s*=\s*"([^"]*)"/m.exec(lock)?.[1];
  if (provider !== 'postgresql') {
    throw new MigrationError(
      'provider-mismatch',
      `${join(migrationsDir, 'migration_lock.toml')} is for provider "${provider ?? '(none)'}", expected "postgresql"`,
    );
  }
  const names = entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  const migrations: Migration[] = [];
  for (const name of names) {
    let bytes: Buffer;
    try {
      bytes = await readFile(join(migrationsDir, name, 'migration.sql'));
    } catch (error) {
      throw new MigrationError('invalid-migrations-dir', `migration folder ${name} has no readable migration.sql`, {
        cause: error,
      });
    }
    migrations.push({ name, sql: bytes.toString('utf8'), checksum: migrationChecksum(bytes) });
  }
  return migrations;
}

/** A `_prisma_migrations` row, column for column as Prisma writes it. */
export interface MigrationRow extends Record<string, unknown> {
  id: string;
  checksum: string;
  finished_at: Date | null;
  migration_name: string;
  logs: string | null;
  rolled_back_at: Date | null;
  started_at: Date;
  applied_steps_count: number;
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Prisma-style schema names we accept: they must survive libpq's `options` parameter unescaped. */
export function assertSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema)) {
    throw new Error(`invalid PostgreSQL schema name "${schema}": use letters, digits, _ or $ (at most 63 characters)`);
  }
}

/**
 * Brings the connection's schema up to date. Holds Prisma's advisory lock for the whole run, so
 * coordinators starting together (or a concurrent `prisma migrate deploy`) apply each migration once.
 */
export async function applyMigrations(conn: SqlConnection, options: MigrateOptions = {}): Promise<MigrationReport> {
  const log = options.logger ?? createLogger('persistence');
  const migrations = await loadMigrations(options.migrationsDir);

  if (options.schema !== undefined) assertSchemaName(options.schema);

  // Lock before anything else: CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent twin.
  await acquireLock(conn, options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, log);
  try {
    if (options.schema !== undefined) {
      const exists = await conn.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [options.schema]);
      // Only CREATE when missing: CREATE SCHEMA IF NOT EXISTS still demands CREATE rights on the database.
      if (exists.length === 0) await conn.exec(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(options.schema)}`);
      await conn.exec(`SET search_path TO ${quoteIdentifier(options.schema)}`);
    }
    const [current] = await conn.query<{ schema: string | null }>('SELECT current_schema() AS schema');
    const schema = current?.schema;
    if (!schema) throw new MigrationError('no-current-schema', 'the connection has no current schema (check search_path)');

    await ensureMigrationsTable(conn, schema);
    const rows = await conn.query<MigrationRow>(
      `SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count
         FROM ${MIGRATIONS_TABLE} ORDER BY started_at, migration_name`,
    );
    const pending = checkHistory(migrations, rows, schema);
    const report: MigrationReport = {
      applied: [],
      alreadyApplied: migrations.filter((m) => !pending.includes(m)).map((m) => m.name),
    };
    for (const migration of pending) {
      await applyOne(conn, migration);
      report.applied.push(migration.name);
      log.info({ migration: migration.name, schema }, 'applied database migration');
    }
    if (report.applied.length === 0) log.debug({ schema, migrations: migrations.length }, 'database schema is up to date');
    return report;
  } finally {
    // A failed unlock must not hide the migration's own error; the lock dies with the session anyway.
    await conn
      .query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK_KEY])
      .catch((error: unknown) => log.warn({ err: error }, 'could not release the migration lock'));
  }
}

async function acquireLock(conn: SqlConnection, timeoutMs: number, log: Logger): Promise<void> {
  // Polling pg_try_advisory_lock instead of blocking keeps the wait bounded without touching lock_timeout.
  const deadline = Date.now() + timeoutMs;
  let warned = false;
  for (;;) {
    const [row] = await conn.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [
      PRISMA_MIGRATE_LOCK_KEY,
    ]);
    if (row?.locked === true) return;
    if (Date.now() >= deadline) {
      throw new MigrationError(
        'lock-timeout',
        `another process held the migration lock (pg_advisory_lock ${PRISMA_MIGRATE_LOCK_KEY}) for more than ${timeoutMs} ms; ` +
          'is a coordinator or `prisma migrate` still migrating this database?',
      );
    }
    if (!warned) {
      log.info('waiting for another process to finish migrating the database');
      warned = true;
    }
    await delay(LOCK_POLL_MS);
  }
}

async function ensureMigrationsTable(conn: SqlConnection, schema: string): Promise<void> {
  const tables = await conn.query<{ name: string }>(
    `SELECT c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
    [schema],
  );
  if (tables.some((t) => t.name === MIGRATIONS_TABLE)) return;
  if (tables.length > 0) {
    // Same rule as Prisma (P3005): never guess the state of a schema someone else populated.
    const names = tables.map((t) => t.name).sort();
    throw new MigrationError(
      'schema-not-empty',
      `schema "${schema}" already has tables (${names.join(', ')}) but no ${MIGRATIONS_TABLE} table; ` +
        'point the coordinator at an empty schema, or baseline it with `prisma migrate resolve --applied <migration>`',
    );
  }
  await conn.exec(MIGRATIONS_TABLE_DDL);
}

/** Validates what the database recorded against the shipped migrations; returns those still to apply. */
function checkHistory(migrations: readonly Migration[], rows: readonly MigrationRow[], schema: string): Migration[] {
  const failed = rows.filter((r) => r.finished_at === null && r.rolled_back_at === null);
  if (failed.length > 0) {
    const details = failed
      .map((r) => `  ${r.migration_name} (started ${r.started_at.toISOString()})${r.logs ? `: ${r.logs.trim()}` : ''}`)
      .join('\n');
    throw new MigrationError(
      'failed-migration-recorded',
      `schema "${schema}" records failed migrations; fix the database, then mark them with ` +
        '`prisma migrate resolve --rolled-back|--applied <name>` before starting again:\n' +
        details,
    );
  }
  const byName = new Map(migrations.map((m) => [m.name, m]));
  const applied = new Set<string>();
  const unknown: string[] = [];
  const edited: string[] = [];
  for (const row of rows) {
    if (row.rolled_back_at !== null) continue;
    const local = byName.get(row.migration_name);
    if (!local) unknown.push(row.migration_name);
    else if (!checksumMatches(local.sql, row.checksum)) edited.push(`${row.migration_name} (recorded ${row.checksum}, file ${local.checksum})`);
    applied.add(row.migration_name);
  }
  if (unknown.length > 0) {
    throw new MigrationError(
      'unknown-migration',
      `schema "${schema}" has migrations this coordinator does not ship: ${unknown.join(', ')}; ` +
        'it was probably migrated by a newer version, which must not be rolled back silently',
    );
  }
  if (edited.length > 0) {
    throw new MigrationError(
      'checksum-mismatch',
      `migration.sql of already-applied migrations changed since they ran: ${edited.join('; ')}. ` +
        'Applied migrations are immutable: restore the original file and add a new migration instead',
    );
  }
  return migrations.filter((m) => !applied.has(m.name));
}

async function applyOne(conn: SqlConnection, migration: Migration): Promise<void> {
  const id = randomUUID();
  // The bookkeeping mirrors Prisma's (insert on start, bump applied_steps_count, stamp finished_at) but
  // shares the script's transaction: a failure leaves neither half-applied DDL nor a failed row behind.
  await conn.exec('BEGIN');
  try {
    await conn.query(
      `INSERT INTO ${MIGRATIONS_TABLE} (id, checksum, started_at, migration_name) VALUES ($1, $2, clock_timestamp(), $3)`,
      [id, migration.checksum, migration.name],
    );
    await conn.exec(migration.sql);
    await conn.query(`UPDATE ${MIGRATIONS_TABLE} SET applied_steps_count = applied_steps_count + 1 WHERE id = $1`, [id]);
    await conn.query(`UPDATE ${MIGRATIONS_TABLE} SET finished_at = clock_timestamp() WHERE id = $1`, [id]);
    await conn.exec('COMMIT');
  } catch (error) {
    await conn.exec('ROLLBACK').catch(() => undefined);
    const reason = error instanceof Error ? error.message : String(error);
    throw new MigrationError('migration-failed', `migration ${migration.name} failed and was rolled back: ${reason}`, {
      cause: error,
    });
  }
}
