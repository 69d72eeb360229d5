// Read by the Prisma CLI (prisma 7 no longer takes the datasource URL from schema.prisma).
// The coordinator itself never loads this file: it migrates with its own migrator
// (src/persistence/migrator.ts) and connects through driver adapters.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  // Only needed for the CLI's database commands (`prisma migrate deploy|status|resolve`) at sites that
  // have Prisma's schema-engine binary; `prisma generate` must keep working without DATABASE_URL.
  ...(process.env.DATABASE_URL ? { datasource: { url: process.env.DATABASE_URL } } : {}),
});
