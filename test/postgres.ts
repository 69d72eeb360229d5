import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Where the cross-package tests find PostgreSQL; CI sets FEDERA_REQUIRE_POSTGRES=1 so it is never skipped there. */
export const POSTGRES_URL = process.env.FEDERA_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

export async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch (error) {
    if (process.env.FEDERA_REQUIRE_POSTGRES === '1') {
      throw new Error(`PostgreSQL at ${POSTGRES_URL} is required (FEDERA_REQUIRE_POSTGRES=1) but unreachable: ${(error as Error).message}`);
    }
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh schema per test run, so runs never see each other's rows; dropped by `drop()`. */
export async function isolatedSchema(prefix: string): Promise<{ url: string; schema: string; drop(): Promise<void> }> {
  const schema = `${prefix}_${randomBytes(4).toString('hex')}`;
  const url = new URL(POSTGRES_URL);
  url.searchParams.set('schema', schema);
  return {
    url: url.toString(),
    schema,
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        await client.query(`drop schema if exists "${schema}" cascade`);
      } finally {
        await client.end();
      }
    },
  };
}
