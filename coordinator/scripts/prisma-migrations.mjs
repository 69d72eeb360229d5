#!/usr/bin/env node
// Authoring migrations offline, with Prisma's own differ: `prisma migrate dev` / `migrate diff` need the
// native schema-engine binary (downloaded, so unavailable here), but the same engine ships as Wasm in
// @prisma/schema-engine-wasm and runs against an in-memory PGlite shadow database.
//
//   node scripts/prisma-migrations.mjs diff            print the SQL that takes the migrations to schema.prisma
//   node scripts/prisma-migrations.mjs check           exit 1 (and print that SQL) when they differ
//   node scripts/prisma-migrations.mjs create <name>   write prisma/migrations/<UTC timestamp>_<name>/migration.sql
//
// This is what `prisma migrate dev --create-only` would write. Requires the dev dependency
// @prisma/schema-engine-wasm; the coordinator never loads it at run time.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import { PrismaPGlite } from 'pglite-prisma-adapter';

const coordinatorDir = dirname(dirname(fileURLToPath(import.meta.url)));
const schemaPath = join(coordinatorDir, 'prisma', 'schema.prisma');
const migrationsDir = join(coordinatorDir, 'prisma', 'migrations');

const [command, name] = process.argv.slice(2);
if (!['diff', 'check', 'create'].includes(command ?? '') || (command === 'create' && !/^[a-z0-9_]+$/.test(name ?? ''))) {
  process.stderr.write('usage: prisma-migrations.mjs diff | check | create <snake_case_name>\n');
  process.exit(2);
}

let SchemaEngine;
try {
  ({ SchemaEngine } = await import('@prisma/schema-engine-wasm'));
} catch {
  process.stderr.write('prisma-migrations: install the dev dependency @prisma/schema-engine-wasm first\n');
  process.exit(2);
}

async function migrationsList() {
  const entries = await readdir(migrationsDir, { withFileTypes: true });
  const directories = [];
  for (const entry of entries.filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    const value = await readFile(join(migrationsDir, entry.name, 'migration.sql'), 'utf8');
    directories.push({ path: entry.name, migrationFile: { path: 'migration.sql', content: { tag: 'ok', value } } });
  }
  return {
    baseDir: migrationsDir,
    lockfile: { path: 'migration_lock.toml', content: await readFile(join(migrationsDir, 'migration_lock.toml'), 'utf8') },
    shadowDbInitScript: '',
    migrationDirectories: directories,
  };
}

const schema = await readFile(schemaPath, 'utf8');
// The engine wants a live connection even for a pure diff; it replays the migrations in the
// adapter's shadow database (a separate in-memory PGlite), so this one stays empty.
const pglite = new PGlite();
await pglite.waitReady;
try {
  const engine = await SchemaEngine.new(
    { datamodels: [[schemaPath, schema]] },
    () => undefined,
    bindMigrationAwareSqlAdapterFactory(new PrismaPGlite(pglite)),
  );
  const { stdout } = await engine.diff({
    from: { tag: 'migrations', ...(await migrationsList()) },
    to: { tag: 'schemaDatamodel', files: [{ path: schemaPath, content: schema }] },
    script: true,
    exitCode: true,
    filters: { externalTables: [], externalEnums: [] },
  });
  const sql = stdout ?? '';
  const empty = sql.trim() === '' || sql.trim() === '-- This is an empty migration.';
  if (command === 'diff') {
    process.stdout.write(sql);
  } else if (command === 'check') {
    if (!empty) {
      process.stderr.write('prisma-migrations: schema.prisma and prisma/migrations differ; the missing migration is:\n');
      process.stdout.write(sql);
      process.exitCode = 1;
    } else {
      process.stdout.write('prisma-migrations: migrations match schema.prisma\n');
    }
  } else if (empty) {
    process.stderr.write('prisma-migrations: nothing to migrate, no migration written\n');
    process.exitCode = 1;
  } else {
    const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
    const dir = join(migrationsDir, `${stamp}_${name}`);
    await mkdir(dir);
    await writeFile(join(dir, 'migration.sql'), sql);
    process.stdout.write(`prisma-migrations: wrote ${join(dir, 'migration.sql')}\n`);
  }
} finally {
  await pglite.close();
}
