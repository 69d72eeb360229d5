#!/usr/bin/env node
// Generates the Prisma Client (prisma/schema.prisma -> src/persistence/generated/) offline.
//
// `prisma generate` itself needs no engine (Prisma 7 clients compile queries in Wasm), but the CLI
// insists on resolving its native schema-engine first and downloads it from binaries.prisma.sh when
// missing, which fails without network. PRISMA_SCHEMA_ENGINE_BINARY only has to name an existing
// file: generate never runs it. We point it at this Node binary unless the caller set a real engine.
//
// Skips the work when schema.prisma, the Prisma version and this script are unchanged since the last
// run (a stamp file in the output folder), so `npm run build` stays fast; pass --force to regenerate.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const coordinatorDir = dirname(dirname(fileURLToPath(import.meta.url)));
const schemaPath = join(coordinatorDir, 'prisma', 'schema.prisma');
const outputDir = join(coordinatorDir, 'src', 'persistence', 'generated');
const stampPath = join(outputDir, '.generated-from');

const require = createRequire(import.meta.url);
const prismaPackage = require.resolve('prisma/package.json');
const prismaCli = join(dirname(prismaPackage), 'build', 'index.js');
const prismaVersion = JSON.parse(readFileSync(prismaPackage, 'utf8')).version;

const stamp = createHash('sha256')
  .update(readFileSync(schemaPath))
  .update(`\0prisma@${prismaVersion}\0`)
  .update(readFileSync(fileURLToPath(import.meta.url)))
  .digest('hex');

const force = process.argv.includes('--force');
if (!force && existsSync(join(outputDir, 'client.ts')) && existsSync(stampPath) && readFileSync(stampPath, 'utf8').trim() === stamp) {
  process.stdout.write(`prisma-generate: ${outputDir} is up to date\n`);
  process.exit(0);
}

const result = spawnSync(process.execPath, [prismaCli, 'generate', '--schema', schemaPath], {
  cwd: coordinatorDir,
  stdio: 'inherit',
  env: {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY || process.execPath,
    // No update check or telemetry round-trips: they only time out offline.
    CHECKPOINT_DISABLE: '1',
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
  },
});
if (result.error) throw result.error;
if (result.status !== 0) {
  process.stderr.write(`prisma-generate: prisma generate exited with ${result.status ?? result.signal}\n`);
  process.exit(result.status ?? 1);
}
writeFileSync(stampPath, `${stamp}\n`);
