import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { createLogger } from '@federa/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  applyMigrations,
  checksumMatches,
  DEFAULT_MIGRATIONS_DIR,
  loadMigrations,
  migrationChecksum,
  MigrationError,
  type SqlConnection,
} from './migrator.js';

const logger = createLogger('persistence-test', { level: 'silent' });

// initdb costs seconds; every test starts from a copy of one freshly initialised cluster instead.
const emptyCluster = await (async () => {
  const pglite = new PGlite();
  try {
    // dumpDataDir before start-up finishes deadlocks PGlite, so wait for it first.
    await pglite.waitReady;
    return await pglite.dumpDataDir('none');
  } finally {
    await pglite.close();
  }
})();

function connectionOf(pglite: PGlite): SqlConnection {
  return {
    async query<Row extends Record<string, unknown>>(sql: string, params: readonly unknown[] = []) {
      return (await pglite.query<Row>(sql, [...params])).rows;
    },
    async exec(sql: string) {
      await pglite.exec(sql);
    },
  };
}

async function tableNames(pglite: PGlite): Promise<string[]> {
  const { rows } = await pglite.query<{ name: string }>(
    `SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}

describe('migration files', () => {
  it('loads the shipped migrations in name order with Prisma checksums', async () => {
    const migrations = await loadMigrations();
    expect(migrations.length).toBeGreaterThan(0);
    expect(migrations.map((m) => m.name)).toEqual([...migrations.map((m) => m.name)].sort());
    for (const m of migrations) {
      expect(m.name).toMatch(/^\d{14}_[a-z0-9_]+$/);
      const bytes = await readFile(join(DEFAULT_MIGRATIONS_DIR, m.name, 'migration.sql'));
      expect(m.checksum).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('matches checksums the way Prisma does', () => {
    // The value Prisma's own test pins for render_checksum("hello").
    expect(migrationChecksum('hello')).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    const lf = 'CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n';
    const crlf = lf.replaceAll('\n', '\r\n');
    expect(checksumMatches(lf, migrationChecksum(crlf))).toBe(true);
    expect(checksumMatches(crlf, migrationChecksum(lf))).toBe(true);
    expect(checksumMatches(lf, migrationChecksum(`${lf} `))).toBe(false);
    expect(checksumMatches('abc\n', migrationChecksum('abc'))).toBe(false);
    // Old engines wrote bytes below 0x10 without a leading zero.
    const digest = createHash('sha256').update(lf).digest();
    const unpadded = Array.from(digest, (b) => b.toString(16)).join('');
    expect(unpadded.length).toBeLessThan(64);
    expect(checksumMatches(lf, unpadded)).toBe(true);
    expect(checksumMatches(`${lf}--`, unpadded)).toBe(false);
  });

  it('refuses a migrations folder for another provider', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-migrations-'));
    try {
      await writeFile(join(dir, 'migration_lock.toml'), 'provider = "sqlite"\n');
      await expect(loadMigrations(dir)).rejects.toMatchObject({ code: 'provider-mismatch' });
      await writeFile(join(dir, 'migration_lock.toml'), 'provider = "postgresql"\n');
      await mkdir(join(dir, '20260101000000_empty'));
      await expect(loadMigrations(dir)).rejects.toMatchObject({ code: 'invalid-migrations-dir' });
      await rm(join(dir, 'migration_lock.toml'));
      await expect(loadMigrations(dir)).rejects.toMatchObject({ code: 'invalid-migrations-dir' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('applyMigrations (PGlite)', () => {
  let pglite: PGlite;
  let conn: SqlConnection;
  let dir: string;

  beforeEach(async () => {
    pglite = new PGlite({ loadDataDir: emptyCluster });
    conn = connectionOf(pglite);
    dir = await mkdtemp(join(tmpdir(), 'federa-migrations-'));
    await cp(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
  });
  afterEach(async () => {
    await pglite.close();
    await rm(dir, { recursive: true, force: true });
  });

  const addMigration = async (name: string, sql: string): Promise<void> => {
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, 'migration.sql'), sql);
  };

  it('applies pending migrations in order, each exactly once', async () => {
    const shipped = (await loadMigrations(dir)).map((m) => m.name);
    expect(await applyMigrations(conn, { migrationsDir: dir, logger })).toEqual({ applied: shipped, alreadyApplied: [] });
    await addMigration('29990101000000_add_note', 'CREATE TABLE "note" ("id" TEXT NOT NULL PRIMARY KEY);\n');
    expect(await applyMigrations(conn, { migrationsDir: dir, logger })).toEqual({
      applied: ['29990101000000_add_note'],
      alreadyApplied: shipped,
    });
    expect(await applyMigrations(conn, { migrationsDir: dir, logger })).toEqual({
      applied: [],
      alreadyApplied: [...shipped, '29990101000000_add_note'],
    });
    const { rows } = await pglite.query<{ migration_name: string }>(
      'SELECT migration_name FROM _prisma_migrations ORDER BY started_at',
    );
    expect(rows.map((r) => r.migration_name)).toEqual([...shipped, '29990101000000_add_note']);
  });

  it('rolls a failing migration back completely and records nothing', async () => {
    await applyMigrations(conn, { migrationsDir: dir, logger });
    const before = await tableNames(pglite);
    await addMigration('29990101000000_broken', 'CREATE TABLE "half" ("id" TEXT);\nSELECT * FROM "no_such_table";\n');
    const failure = await applyMigrations(conn, { migrationsDir: dir, logger }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(MigrationError);
    expect(failure).toMatchObject({ code: 'migration-failed' });
    expect((failure as Error).message).toContain('29990101000000_broken');
    expect(await tableNames(pglite)).toEqual(before);
    const { rows } = await pglite.query('SELECT 1 FROM _prisma_migrations WHERE migration_name = $1', ['29990101000000_broken']);
    expect(rows).toHaveLength(0);
    // Fixing the file is enough: nothing has to be resolved by hand.
    await writeFile(join(dir, '29990101000000_broken', 'migration.sql'), 'CREATE TABLE "half" ("id" TEXT);\n');
    expect((await applyMigrations(conn, { migrationsDir: dir, logger })).applied).toEqual(['29990101000000_broken']);
  });

  it('refuses to start when an applied migration was edited', async () => {
    await applyMigrations(conn, { migrationsDir: dir, logger });
    const [first] = await loadMigrations(dir);
    if (!first) throw new Error('no shipped migrations');
    const file = join(dir, first.name, 'migration.sql');
    await writeFile(file, `${await readFile(file, 'utf8')}\n-- edited after it was applied\n`);
    await expect(applyMigrations(conn, { migrationsDir: dir, logger })).rejects.toMatchObject({
      code: 'checksum-mismatch',
      message: expect.stringContaining(first.name),
    });
    // A git checkout with CRLF line endings is the same migration, as far as Prisma is concerned.
    await writeFile(file, first.sql.replaceAll('\n', '\r\n'));
    expect(await applyMigrations(conn, { migrationsDir: dir, logger })).toMatchObject({ applied: [] });
  });

  it('refuses a database migrated by a newer build', async () => {
    await addMigration('29990101000000_future', 'CREATE TABLE "future" ("id" TEXT);\n');
    await applyMigrations(conn, { migrationsDir: dir, logger });
    await rm(join(dir, '29990101000000_future'), { recursive: true });
    await expect(applyMigrations(conn, { migrationsDir: dir, logger })).rejects.toMatchObject({
      code: 'unknown-migration',
      message: expect.stringContaining('29990101000000_future'),
    });
  });

  it('refuses while Prisma has a failed migration on record, and accepts it once resolved', async () => {
    await applyMigrations(conn, { migrationsDir: dir, logger });
    // What `prisma migrate deploy` leaves behind when a script fails outside a transaction.
    await pglite.query(
      `INSERT INTO _prisma_migrations (id, checksum, migration_name, logs, started_at)
       VALUES ('00000000-0000-4000-8000-000000000000', $1, '29990101000000_crashed', 'boom', now())`,
      [migrationChecksum('x')],
    );
    await expect(applyMigrations(conn, { migrationsDir: dir, logger })).rejects.toMatchObject({
      code: 'failed-migration-recorded',
      message: expect.stringContaining('boom'),
    });
    // `prisma migrate resolve --rolled-back` sets rolled_back_at; such rows are ignored.
    await pglite.query(`UPDATE _prisma_migrations SET rolled_back_at = now() WHERE migration_name = '29990101000000_crashed'`);
    expect(await applyMigrations(conn, { migrationsDir: dir, logger })).toMatchObject({ applied: [] });
  });

  it('refuses a non-empty schema that has no migration history', async () => {
    await pglite.exec('CREATE TABLE "someone_elses" ("id" INT)');
    await expect(applyMigrations(conn, { migrationsDir: dir, logger })).rejects.toMatchObject({
      code: 'schema-not-empty',
      message: expect.stringContaining('someone_elses'),
    });
    expect(await tableNames(pglite)).toEqual(['someone_elses']);
  });

  it('creates and migrates a named schema without touching public', async () => {
    const report = await applyMigrations(conn, { migrationsDir: dir, schema: 'federa_custom', logger });
    expect(report.applied.length).toBeGreaterThan(0);
    const { rows } = await pglite.query<{ schemaname: string }>(
      `SELECT DISTINCT schemaname FROM pg_tables WHERE tablename IN ('study', '_prisma_migrations')`,
    );
    expect(rows.map((r) => r.schemaname)).toEqual(['federa_custom']);
    await expect(applyMigrations(conn, { migrationsDir: dir, schema: 'bad name; drop', logger })).rejects.toThrow(
      /invalid PostgreSQL schema name/,
    );
  });

  it('releases the advisory lock, also after a failure', async () => {
    await addMigration('29990101000000_broken', 'SELECT * FROM "no_such_table";\n');
    await expect(applyMigrations(conn, { migrationsDir: dir, logger })).rejects.toMatchObject({ code: 'migration-failed' });
    const { rows } = await pglite.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory'`);
    expect(rows).toHaveLength(0);
  });
});
