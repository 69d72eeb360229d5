import { describeIssues } from '@federa/shared';
import { AuditLog } from '../audit/audit-log.js';
import { Tokens, tokenRequestSchema, type IssuedToken, type TokenView } from '../auth/tokens.js';
import { DataDirLockedError, openDatabase, type Database } from '../persistence/index.js';
import { Settings } from '../settings/settings.js';
import type { ApiClient } from './api-client.js';
import { CliUsageError, type CliIo } from './io.js';
import { formatTable } from './table.js';

/**
 * `federa token create|list|revoke`: over REST with an admin login, or offline straight on the coordinator's
 * database (--data-dir / --database-url), which is how the first admin token is made (and a lost one replaced).
 * Every action is audited either way.
 */

export interface TokenTarget {
  /** Offline: the coordinator's data folder or database (the coordinator using an embedded folder must be stopped). */
  offline?: { dataDir?: string; databaseUrl?: string };
  /** Online: the logged-in admin's client. */
  api?: () => ApiClient;
}

export interface TokenCreateOptions {
  role?: string;
  name?: string;
  expiresInDays?: string;
  json: boolean;
}

async function withDatabase<T>(offline: NonNullable<TokenTarget['offline']>, run: (tokens: Tokens, db: Database, audit: AuditLog) => Promise<T>): Promise<T> {
  let db: Database;
  try {
    db = await openDatabase({ dataDir: offline.dataDir ?? '.federa/coordinator', databaseUrl: offline.databaseUrl });
  } catch (error) {
    if (error instanceof DataDirLockedError) throw new CliUsageError(`${error.message}: stop the coordinator first, or do this over REST (federa login with an admin token)`);
    throw error;
  }
  try {
    const audit = new AuditLog(db, null);
    return await run(new Tokens(db, audit), db, audit);
  } finally {
    await db.close();
  }
}

function target(t: TokenTarget): { offline: NonNullable<TokenTarget['offline']> } | { api: ApiClient } {
  if (t.offline && (t.offline.dataDir || t.offline.databaseUrl)) return { offline: t.offline };
  if (t.api) return { api: t.api() };
  throw new CliUsageError('say which coordinator: log in as an admin (federa login), or work offline on its data with --data-dir DIR or --database-url URL');
}

export async function tokenCreate(t: TokenTarget, opts: TokenCreateOptions, io: CliIo): Promise<number> {
  const days = opts.expiresInDays;
  const parsed = tokenRequestSchema.safeParse({
    name: opts.name,
    role: opts.role,
    ...(days !== undefined ? { expiresInDays: /^[0-9]+$/.test(days) ? Number(days) : days } : {}),
  });
  if (!parsed.success) throw new CliUsageError(`token create: ${describeIssues(parsed.error).join('; ')}`);
  const where = target(t);
  const issued =
    'api' in where
      ? await where.api.json<IssuedToken>('/api/v1/tokens', { method: 'POST', body: parsed.data })
      : await withDatabase(where.offline, async (tokens, db, audit) =>
          tokens.issue(parsed.data, 'cli', (await new Settings(db, audit).current()).tokenMaxLifetimeDays),
        );
  if (opts.json) io.stdout(`${JSON.stringify(issued, null, 2)}\n`);
  else {
    io.stdout(`${issued.token}\n`);
    io.stderr(`issued ${issued.role} token ${issued.id} "${issued.name}", valid until ${issued.expiresAt}. It is shown only this once: keep it in a password manager.\n`);
  }
  return 0;
}

export async function tokenList(t: TokenTarget, opts: { json: boolean }, io: CliIo): Promise<number> {
  const where = target(t);
  const list = 'api' in where ? await where.api.json<TokenView[]>('/api/v1/tokens') : await withDatabase(where.offline, (tokens) => tokens.list());
  if (opts.json) io.stdout(`${JSON.stringify(list, null, 2)}\n`);
  else io.stdout(formatTable(['ID', 'ROLE', 'STATUS', 'EXPIRES', 'NAME'], list.map((x) => [x.id, x.role, x.status, x.expiresAt, x.name])));
  return 0;
}

export async function tokenRevoke(t: TokenTarget, id: string, opts: { json: boolean }, io: CliIo): Promise<number> {
  const where = target(t);
  const revoked =
    'api' in where
      ? await where.api.json<TokenView>(`/api/v1/tokens/${encodeURIComponent(id)}`, { method: 'DELETE' })
      : await withDatabase(where.offline, (tokens) => tokens.revoke(id, 'cli'));
  if (opts.json) io.stdout(`${JSON.stringify(revoked, null, 2)}\n`);
  else io.stdout(`revoked token ${revoked.id} "${revoked.name}" (${revoked.role})\n`);
  return 0;
}
