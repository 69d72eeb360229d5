import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createLogger } from '@federa/shared';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DataDirLockedError } from './data-dir-lock.js';
import { migrate, openDatabase, parsePostgresUrl, type Database, type DatabaseConfig } from './database.js';
import { Prisma } from './generated/client.js';
import { DEFAULT_MIGRATIONS_DIR, loadMigrations, MigrationError, PRISMA_MIGRATE_LOCK_KEY, type MigrationRow } from './migrator.js';

const logger = createLogger('persistence-test', { level: 'silent' });
const shipped = (await loadMigrations()).map((m) => m.name);

// ---------------------------------------------------------------------------------------------
// PostgreSQL availability. Locally a missing server only skips its suite (with the reason logged);
// CI sets FEDERA_REQUIRE_POSTGRES=1 so that an unreachable server fails instead of passing silently.
const POSTGRES_URL = process.env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/test';
const REQUIRE_POSTGRES = process.env.FEDERA_REQUIRE_POSTGRES === '1';

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

async function probePostgres(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: parsePostgresUrl(url).connectionString, connectionTimeoutMillis: 3000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `${redact(url)}: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const postgresUnavailable = await probePostgres(POSTGRES_URL);
if (postgresUnavailable && !REQUIRE_POSTGRES) {
  // Visible in the test output on purpose: a skipped backend must not look like a tested one.
  process.stderr.write(`[persistence] skipping the PostgreSQL suite, server unreachable: ${postgresUnavailable}\n`);
}

/** The URL with `schema` replaced: each PostgreSQL test gets a private, throw-away schema. */
function withSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.toString();
}

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: parsePostgresUrl(POSTGRES_URL).connectionString });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------
interface Backend {
  kind: Database['kind'];
  /** A fresh, empty database for one test. */
  /** A new, empty database; with `migrated`, one that may already hold the shipped migrations (faster to open). */
  fresh(migrated?: boolean): Promise<DatabaseConfig>;
  cleanup(): Promise<void>;
}

function pgliteBackend(): Backend {
  const dirs: string[] = [];
  // Migrating an embedded database takes seconds per test on a small machine: tests that are not about migrations
  // start from a copy of one migrated once.
  let template: Promise<string> | undefined;
  const migratedTemplate = async (): Promise<string> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'federa-db-template-'));
    dirs.push(dataDir);
    await (await openDatabase({ dataDir }, { logger })).close();
    return dataDir;
  };
  return {
    kind: 'pglite',
    async fresh(migrated = false) {
      const dataDir = await mkdtemp(join(tmpdir(), 'federa-db-'));
      dirs.push(dataDir);
      if (migrated) {
        template ??= migratedTemplate();
        await cp(await template, dataDir, { recursive: true });
      }
      return { dataDir };
    },
    async cleanup() {
      await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
    },
  };
}

function postgresBackend(): Backend {
  const schemas: string[] = [];
  const dirs: string[] = [];
  return {
    kind: 'postgresql',
    async fresh() {
      const schema = `federa_test_${randomBytes(6).toString('hex')}`;
      schemas.push(schema);
      const dataDir = await mkdtemp(join(tmpdir(), 'federa-db-'));
      dirs.push(dataDir);
      return { dataDir, databaseUrl: withSchema(POSTGRES_URL, schema) };
    },
    async cleanup() {
      for (const schema of schemas.splice(0)) await dropSchema(schema);
      await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
    },
  };
}

/** Tests about migrating itself: they start from an empty database whatever the backend. */
const MIGRATION_TESTS = new Set([
  'migrates on first open and applies nothing on the next',
  'records _prisma_migrations exactly like prisma migrate deploy',
  'refuses to start when an applied migration was changed',
  'applies each migration once when coordinators start together',
  'waits for the lock `prisma migrate` holds, and gives up after the timeout',
]);

const PRISMA_MIGRATIONS_COLUMNS = [
  { column_name: 'id', data_type: 'character varying', character_maximum_length: 36, is_nullable: 'NO', column_default: null },
  { column_name: 'checksum', data_type: 'character varying', character_maximum_length: 64, is_nullable: 'NO', column_default: null },
  { column_name: 'finished_at', data_type: 'timestamp with time zone', character_maximum_length: null, is_nullable: 'YES', column_default: null },
  { column_name: 'migration_name', data_type: 'character varying', character_maximum_length: 255, is_nullable: 'NO', column_default: null },
  { column_name: 'logs', data_type: 'text', character_maximum_length: null, is_nullable: 'YES', column_default: null },
  { column_name: 'rolled_back_at', data_type: 'timestamp with time zone', character_maximum_length: null, is_nullable: 'YES', column_default: null },
  { column_name: 'started_at', data_type: 'timestamp with time zone', character_maximum_length: null, is_nullable: 'NO', column_default: 'now()' },
  { column_name: 'applied_steps_count', data_type: 'integer', character_maximum_length: null, is_nullable: 'NO', column_default: '0' },
];

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function expectPrismaError(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Prisma.PrismaClientKnownRequestError);
  expect((error as Prisma.PrismaClientKnownRequestError).code).toBe(code);
}

/** Runs the fixture in a separate Node process and reports how it ended. */
function runOpenAndClose(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
  const flags = process.features.typescript ? [] : ['--experimental-strip-types'];
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...flags, '--no-warnings', '--import', join(fixtures, 'ts-loader.mjs'), join(fixtures, 'open-and-close.mjs'), ...args],
      { env: { ...process.env, FEDERA_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

// ---------------------------------------------------------------------------------------------
function defineBackendSuite(backend: Backend, unavailable: string | undefined): void {
  describe(`openDatabase (${backend.kind})`, () => {
    let config: DatabaseConfig;
    const open: Database[] = [];
    const openDb = async (options: Parameters<typeof openDatabase>[1] = {}): Promise<Database> => {
      const db = await openDatabase(config, { logger, ...options });
      open.push(db);
      return db;
    };

    beforeAll(() => {
      if (unavailable) throw new Error(`FEDERA_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: ${unavailable}`);
    });
    beforeEach(async (context) => {
      config = await backend.fresh(!MIGRATION_TESTS.has(context.task.name));
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((db) => db.close()));
    });
    afterAll(async () => {
      await backend.cleanup();
    });

    it('migrates on first open and applies nothing on the next', async () => {
      const first = await openDb();
      expect(first.kind).toBe(backend.kind);
      expect(first.migrations).toEqual({ applied: shipped, alreadyApplied: [] });
      await first.close();
      await first.close(); // idempotent
      const second = await openDb();
      expect(second.migrations).toEqual({ applied: [], alreadyApplied: shipped });
      await second.close();
      expect(await migrate(config, { logger })).toEqual({ applied: [], alreadyApplied: shipped });
    });

    it('records _prisma_migrations exactly like prisma migrate deploy', async () => {
      const db = await openDb();
      const columns = await db.prisma.$queryRaw<Array<Record<string, unknown>>>`
        SELECT column_name::text, data_type::text, character_maximum_length::int, is_nullable::text, column_default::text
          FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = '_prisma_migrations'
         ORDER BY ordinal_position`;
      expect(columns).toEqual(PRISMA_MIGRATIONS_COLUMNS);
      const [pk] = await db.prisma.$queryRaw<Array<{ name: string; def: string }>>`
        SELECT conname::text AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
         WHERE conrelid = '_prisma_migrations'::regclass AND contype = 'p'`;
      expect(pk).toEqual({ name: '_prisma_migrations_pkey', def: 'PRIMARY KEY (id)' });

      const rows = await db.prisma.$queryRaw<MigrationRow[]>`SELECT * FROM _prisma_migrations ORDER BY started_at`;
      const files = await loadMigrations();
      expect(rows.map((r) => r.migration_name)).toEqual(files.map((f) => f.name));
      for (const [i, row] of rows.entries()) {
        expect(row.id).toMatch(UUID_V4);
        expect(row.checksum).toBe(files[i]?.checksum);
        expect(row.logs).toBeNull();
        expect(row.rolled_back_at).toBeNull();
        expect(row.applied_steps_count).toBe(1);
        expect(row.finished_at).toBeInstanceOf(Date);
        expect(row.finished_at!.getTime()).toBeGreaterThanOrEqual(row.started_at.getTime());
        expect(Math.abs(row.started_at.getTime() - Date.now())).toBeLessThan(120_000);
      }
    });

    it('refuses to start when an applied migration was changed', async () => {
      const migrationsDir = join(config.dataDir, 'migrations-copy');
      await cp(DEFAULT_MIGRATIONS_DIR, migrationsDir, { recursive: true });
      await (await openDb({ migrationsDir })).close();
      const file = join(migrationsDir, shipped[0]!, 'migration.sql');
      await writeFile(file, (await readFile(file, 'utf8')).replace('CREATE TABLE', 'CREATE  TABLE'));
      const error = await openDb({ migrationsDir }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MigrationError);
      expect(error).toMatchObject({ code: 'checksum-mismatch', message: expect.stringContaining(shipped[0]!) });
    });

    it('stores and queries every model', async () => {
      const { prisma } = await openDb();
      const site = await prisma.site.create({ data: { id: 'hospital-a' } });
      expect(site).toMatchObject({ id: 'hospital-a', status: 'registered', certificateFingerprint: null });
      expect(site.registeredAt).toBeInstanceOf(Date);
      await prisma.site.update({ where: { id: 'hospital-a' }, data: { certificateFingerprint: 'sha256:ab12' } });
      await prisma.site.create({ data: { id: 'hospital-b', status: 'revoked' } });

      const spec = { model: { kind: 'mlp', layers: [64, 32, 2] }, rounds: 3, minSites: 2, learningRate: 0.01, note: 'ünïcode ✓' };
      const study = await prisma.study.create({ data: { name: 'chest x-ray', spec, specHash: 'f'.repeat(64), totalRounds: 3 } });
      expect(study.id).toMatch(UUID_V7);
      expect(study).toMatchObject({ status: 'draft', currentRound: 0, startedAt: null, finishedAt: null, error: null, spec });
      const started = new Date('2031-02-03T04:05:06.789Z');
      const running = await prisma.study.update({ where: { id: study.id }, data: { status: 'running', startedAt: started } });
      expect(running.startedAt).toEqual(started);
      expect(running.updatedAt.getTime()).toBeGreaterThanOrEqual(study.updatedAt.getTime());

      await prisma.modelVersion.create({
        data: { studyId: study.id, round: 0, sha256: 'a'.repeat(64), sizeBytes: 1024, parameterCount: 256 },
      });
      const round = await prisma.round.create({
        data: { studyId: study.id, number: 1, assignedSites: ['hospital-a', 'hospital-b'], deadlineAt: started },
      });
      expect(round).toMatchObject({ status: 'open', participants: 0, closedAt: null, aggregateSha256: null });
      await prisma.updateReceipt.create({
        data: { roundId: round.id, siteId: 'hospital-a', sha256: 'b'.repeat(64), sizeBytes: 1028, encoding: 'UPDATE_ENCODING_PLAINTEXT_F32' },
      });
      await prisma.roundMetric.create({
        data: { roundId: round.id, siteId: 'hospital-a', kind: 'train', loss: 0.6931471805599453, accuracy: 0.5, samples: null },
      });
      await prisma.roundMetric.upsert({
        where: { roundId_siteId_kind: { roundId: round.id, siteId: 'hospital-a', kind: 'train' } },
        create: { roundId: round.id, siteId: 'hospital-a', kind: 'train', loss: 1, accuracy: 0 },
        update: { loss: 0.25, samples: 120 },
      });

      const pending = await prisma.round.findMany({
        where: { status: 'open', assignedSites: { has: 'hospital-b' }, receipts: { none: { siteId: 'hospital-b' } } },
      });
      expect(pending.map((r) => r.id)).toEqual([round.id]);
      const loaded = await prisma.round.findUniqueOrThrow({
        where: { studyId_number: { studyId: study.id, number: 1 } },
        include: { receipts: true, metrics: true, study: true },
      });
      expect(loaded.assignedSites).toEqual(['hospital-a', 'hospital-b']);
      expect(loaded.deadlineAt).toEqual(started);
      expect(loaded.receipts.map((r) => [r.siteId, r.sizeBytes, r.encoding])).toEqual([
        ['hospital-a', 1028, 'UPDATE_ENCODING_PLAINTEXT_F32'],
      ]);
      expect(loaded.metrics.map((m) => [m.kind, m.loss, m.accuracy, m.samples])).toEqual([['train', 0.25, 0.5, 120]]);
      expect(loaded.study.spec).toEqual(spec);

      const closedAt = new Date();
      await prisma.$transaction([
        prisma.modelVersion.create({
          data: { studyId: study.id, round: 1, sha256: 'c'.repeat(64), sizeBytes: 1024, parameterCount: 256 },
        }),
        prisma.round.update({
          where: { id: round.id },
          data: { status: 'closed', closedAt, participants: 1, aggregateSha256: 'd'.repeat(64) },
        }),
      ]);
      const models = await prisma.modelVersion.findMany({ where: { studyId: study.id }, orderBy: { round: 'asc' } });
      expect(models.map((m) => [m.round, m.sha256.charAt(0)])).toEqual([
        [0, 'a'],
        [1, 'c'],
      ]);
      expect(await prisma.round.findUniqueOrThrow({ where: { id: round.id } })).toMatchObject({
        status: 'closed',
        closedAt,
        participants: 1,
      });
      expect(await prisma.site.findMany({ orderBy: { id: 'asc' }, select: { id: true, status: true, certificateFingerprint: true } })).toEqual([
        { id: 'hospital-a', status: 'registered', certificateFingerprint: 'sha256:ab12' },
        { id: 'hospital-b', status: 'revoked', certificateFingerprint: null },
      ]);
    });

    it('enforces the unique keys and foreign keys', async () => {
      const { prisma } = await openDb();
      await prisma.site.createMany({ data: [{ id: 'a' }, { id: 'b' }] });
      const study = await prisma.study.create({ data: { name: 's', spec: {}, specHash: 'h', totalRounds: 2 } });
      const round = await prisma.round.create({ data: { studyId: study.id, number: 1 } });
      const receipt = { roundId: round.id, sha256: 'e'.repeat(64), sizeBytes: 4, encoding: 'x' };

      await expectPrismaError(prisma.site.create({ data: { id: 'a' } }), 'P2002');
      await expectPrismaError(prisma.round.create({ data: { studyId: study.id, number: 1 } }), 'P2002');
      await prisma.modelVersion.create({ data: { studyId: study.id, round: 0, sha256: 'm', sizeBytes: 1, parameterCount: 1 } });
      await expectPrismaError(
        prisma.modelVersion.create({ data: { studyId: study.id, round: 0, sha256: 'n', sizeBytes: 1, parameterCount: 1 } }),
        'P2002',
      );
      // A site uploads once per round: the second receipt is refused by the database itself.
      await prisma.updateReceipt.create({ data: { ...receipt, siteId: 'a' } });
      await expectPrismaError(prisma.updateReceipt.create({ data: { ...receipt, siteId: 'a' } }), 'P2002');
      await prisma.updateReceipt.create({ data: { ...receipt, siteId: 'b' } });
      const metric = { roundId: round.id, siteId: 'a', loss: 1, accuracy: 0.5 };
      await prisma.roundMetric.create({ data: { ...metric, kind: 'train' } });
      await prisma.roundMetric.create({ data: { ...metric, kind: 'validation' } });
      await expectPrismaError(prisma.roundMetric.create({ data: { ...metric, kind: 'validation' } }), 'P2002');

      await expectPrismaError(prisma.updateReceipt.create({ data: { ...receipt, siteId: 'nobody' } }), 'P2003');
      await expectPrismaError(prisma.round.create({ data: { studyId: 'no-such-study', number: 1 } }), 'P2003');
      // Sites with history cannot be deleted (same P2003 on both back ends)...
      await expectPrismaError(prisma.site.delete({ where: { id: 'a' } }), 'P2003');
      // ...while deleting a study takes its rounds, receipts, metrics and models with it (Cascade).
      await prisma.study.delete({ where: { id: study.id } });
      expect(
        await Promise.all([prisma.round.count(), prisma.updateReceipt.count(), prisma.roundMetric.count(), prisma.modelVersion.count()]),
      ).toEqual([0, 0, 0, 0]);
      expect(await prisma.site.count()).toBe(2);
    });

    it('rolls back failed transactions', async () => {
      const { prisma } = await openDb();
      await prisma.site.create({ data: { id: 'a' } });
      await expectPrismaError(
        prisma.$transaction([prisma.site.create({ data: { id: 'b' } }), prisma.site.create({ data: { id: 'a' } })]),
        'P2002',
      );
      const rolledBack = await prisma
        .$transaction(async (tx) => {
          await tx.site.create({ data: { id: 'c' } });
          throw new Error('abort');
        })
        .catch((e: unknown) => e);
      expect(rolledBack).toMatchObject({ message: 'abort' });
      await prisma.$transaction(async (tx) => {
        await tx.site.create({ data: { id: 'd' } });
        await tx.site.update({ where: { id: 'd' }, data: { status: 'active' } });
      });
      expect((await prisma.site.findMany({ orderBy: { id: 'asc' } })).map((s) => [s.id, s.status])).toEqual([
        ['a', 'registered'],
        ['d', 'active'],
      ]);
    });

    it('lets a separate process open, use and close it, and then exit by itself', async () => {
      const result = await runOpenAndClose([config.dataDir, config.databaseUrl ?? ''], 90_000);
      expect(result.timedOut, `child did not exit on its own; stderr:\n${result.stderr}`).toBe(false);
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual({ kind: backend.kind, sites: 1 });
    });

    if (backend.kind === 'pglite') {
      it('keeps its data in <dataDir>/db across reopening', async () => {
        const first = await openDb();
        await first.prisma.site.create({ data: { id: 'persisted', certificateFingerprint: 'fp' } });
        await first.close();
        await access(join(config.dataDir, 'db', 'PG_VERSION'));
        const second = await openDb();
        expect(await second.prisma.site.findUnique({ where: { id: 'persisted' } })).toMatchObject({ certificateFingerprint: 'fp' });
      });

      it('refuses to open one data folder twice at the same time', async () => {
        const first = await openDb();
        await expect(openDatabase(config, { logger })).rejects.toBeInstanceOf(DataDirLockedError);
        await expect(migrate(config, { logger })).rejects.toBeInstanceOf(DataDirLockedError);
        await first.close();
        await (await openDb()).close();
      });

      it('treats a lock file left by a dead process as stale', async () => {
        await (await openDb()).close();
        // No live process has this pid (pid_max is far below it on Linux and macOS).
        await writeFile(join(config.dataDir, 'db.lock'), '2147483646\n');
        const db = await openDb();
        expect(db.migrations.applied).toEqual([]);
      });
    } else {
      it('keeps every table inside the schema named in the URL', async () => {
        const db = await openDb();
        const schema = new URL(config.databaseUrl!).searchParams.get('schema');
        const [current] = await db.prisma.$queryRaw<Array<{ schema: string }>>`SELECT current_schema()::text AS schema`;
        expect(current?.schema).toBe(schema);
        const tables = await db.prisma.$queryRaw<Array<{ table_name: string }>>`
          SELECT table_name::text FROM information_schema.tables WHERE table_schema = ${schema} ORDER BY 1`;
        expect(tables.map((t) => t.table_name)).toEqual([
          '_prisma_migrations',
          'api_token',
          'audit_checkpoint',
          'audit_record',
          'ciphertext_seed',
          'key_epoch',
          'key_share',
          'key_switch_share',
          'model_version',
          'round',
          'round_evaluation',
          'round_failure',
          'round_metric',
          'setting',
          'site',
          'site_dataset_summary',
          'site_refusal',
          'study',
          'update_receipt',
        ]);
      });

      it('applies each migration once when coordinators start together', async () => {
        const reports = await Promise.all([1, 2, 3].map(() => migrate(config, { logger })));
        expect(reports.flatMap((r) => r.applied).sort()).toEqual([...shipped].sort());
        const db = await openDb();
        const [row] = await db.prisma.$queryRaw<Array<{ n: number }>>`SELECT count(*)::int AS n FROM _prisma_migrations`;
        expect(row?.n).toBe(shipped.length);
      });

      it('waits for the lock `prisma migrate` holds, and gives up after the timeout', async () => {
        const holder = new pg.Client({ connectionString: parsePostgresUrl(POSTGRES_URL).connectionString });
        await holder.connect();
        try {
          await holder.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK_KEY]);
          const started = Date.now();
          await expect(migrate(config, { logger, lockTimeoutMs: 600 })).rejects.toMatchObject({ code: 'lock-timeout' });
          expect(Date.now() - started).toBeGreaterThanOrEqual(600);
          const waiting = migrate(config, { logger, lockTimeoutMs: 20_000 });
          await new Promise((resolve) => setTimeout(resolve, 300));
          await holder.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK_KEY]);
          expect((await waiting).applied).toEqual(shipped);
        } finally {
          await holder.end();
        }
      });
    }
  });
}

defineBackendSuite(pgliteBackend(), undefined);
if (!postgresUnavailable || REQUIRE_POSTGRES) defineBackendSuite(postgresBackend(), postgresUnavailable);
else describe.skip(`openDatabase (postgresql): ${postgresUnavailable}`, () => undefined);

describe('parsePostgresUrl', () => {
  it('moves Prisma\'s schema parameter into the search_path and keeps the rest', () => {
    const target = parsePostgresUrl('postgresql://u:p%40ss@db.example:5433/federa?schema=tenant_1&sslmode=require');
    expect(target.schema).toBe('tenant_1');
    const url = new URL(target.connectionString);
    expect(url.searchParams.get('schema')).toBeNull();
    expect(url.searchParams.get('sslmode')).toBe('require');
    expect(url.searchParams.get('options')).toBe('-c search_path="tenant_1"');
    expect(url.password).toBe('p%40ss');
    expect(parsePostgresUrl('postgres://localhost/x').schema).toBe('public');
  });

  it('rejects what it cannot use, without echoing credentials', () => {
    expect(() => parsePostgresUrl('mysql://root:secret@localhost/x')).toThrow(/postgres/);
    expect(() => parsePostgresUrl('postgresql://localhost/x?schema=a;b')).toThrow(/schema name/);
    let message = '';
    try {
      parsePostgresUrl('not a url with secret');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).not.toContain('secret');
  });
});
