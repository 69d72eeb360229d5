#!/usr/bin/env node
// `npm run db:migrate`: applies pending migrations and exits, using the compiled coordinator
// (run `npm run build` first). The coordinator also does this at start-up; this entry point is for
// deployments that migrate in a separate step (e.g. a Kubernetes init job) before rolling out.
//
//   node scripts/db-migrate.mjs [--database-url URL] [--data-dir DIR] [--lock-timeout-ms N]
//
// Same selection as the coordinator: --database-url, else DATABASE_URL, selects PostgreSQL
// (`?schema=name` honoured); otherwise the embedded PGlite database in --data-dir, else
// FEDERA_DATA_DIR, else .federa/coordinator.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';

const entry = new URL('../dist/persistence/index.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('db-migrate: dist/persistence/index.js is missing; run `npm run build` first\n');
  process.exit(2);
}
const { migrate, MigrationError } = await import(entry.href);

const { values } = parseArgs({
  strict: true,
  options: {
    'database-url': { type: 'string' },
    'data-dir': { type: 'string' },
    'lock-timeout-ms': { type: 'string' },
  },
});
const lockTimeoutMs = values['lock-timeout-ms'] === undefined ? undefined : Number(values['lock-timeout-ms']);
if (lockTimeoutMs !== undefined && !(Number.isInteger(lockTimeoutMs) && lockTimeoutMs >= 0)) {
  process.stderr.write(`db-migrate: --lock-timeout-ms must be a whole number, got ${values['lock-timeout-ms']}\n`);
  process.exit(2);
}

try {
  const report = await migrate(
    {
      databaseUrl: values['database-url'] ?? (process.env.DATABASE_URL || undefined),
      dataDir: values['data-dir'] ?? (process.env.FEDERA_DATA_DIR || '.federa/coordinator'),
    },
    lockTimeoutMs === undefined ? {} : { lockTimeoutMs },
  );
  process.stdout.write(
    report.applied.length === 0
      ? `db-migrate: up to date (${report.alreadyApplied.length} migrations applied earlier)\n`
      : `db-migrate: applied ${report.applied.join(', ')}\n`,
  );
} catch (error) {
  const message = error instanceof MigrationError ? `${error.message} [${error.code}]` : error instanceof Error ? error.stack : String(error);
  process.stderr.write(`db-migrate: ${message}\n`);
  process.exit(1);
}
