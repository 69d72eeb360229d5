import { parseArgs } from 'node:util';
import { describeIssues } from '@federa/shared';
import { AuditLog } from '../audit/audit-log.js';
import { Tokens, tokenRequestSchema } from '../auth/tokens.js';
import { DataDirLockedError, openDatabase } from '../persistence/index.js';
import { Settings } from '../settings/settings.js';
import { CliUsageError, type CliIo } from './io.js';

export const TOKEN_USAGE = `federa token create --role admin|researcher|auditor --name NAME --data-dir DIR [--database-url URL]
                    [--expires-in-days N] [--json]
                    issue a REST token straight into the coordinator's database (offline: stop a
                    coordinator that uses the same embedded data folder first); the token is shown once
federa token list --data-dir DIR [--database-url URL] [--json]
federa token revoke ID --data-dir DIR [--database-url URL]
                    once the coordinator runs, admins do all of this over REST (/api/v1/tokens)
`;

/** `federa token ...`: the offline way to the first admin token (and out of a lost one). Every action is audited. */
export async function tokenCommand(argv: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    strict: true,
    allowPositionals: true,
    options: {
      role: { type: 'string' },
      name: { type: 'string' },
      'data-dir': { type: 'string' },
      'database-url': { type: 'string' },
      'expires-in-days': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (action !== 'create' && action !== 'list' && action !== 'revoke') {
    throw new CliUsageError(`token needs "create", "list" or "revoke", got ${action === undefined ? 'nothing' : `"${action}"`}`, TOKEN_USAGE);
  }
  const dataDir = values['data-dir'] ?? io.env.FEDERA_DATA_DIR;
  const databaseUrl = values['database-url'] ?? io.env.DATABASE_URL;
  if (!dataDir && !databaseUrl) throw new CliUsageError(`token ${action} needs --data-dir DIR (the coordinator's) or --database-url URL`, TOKEN_USAGE);
  let request: ReturnType<typeof tokenRequestSchema.parse> | undefined;
  if (action === 'create') {
    const days = values['expires-in-days'];
    const parsed = tokenRequestSchema.safeParse({
      name: values.name,
      role: values.role,
      ...(days !== undefined ? { expiresInDays: /^[0-9]+$/.test(days) ? Number(days) : days } : {}),
    });
    if (!parsed.success) throw new CliUsageError(`token create: ${describeIssues(parsed.error).join('; ')}`, TOKEN_USAGE);
    request = parsed.data;
  }
  if (action === 'revoke' && positionals.length !== 1) throw new CliUsageError('token revoke needs the token ID (from `federa token list`)', TOKEN_USAGE);

  let db;
  try {
    db = await openDatabase({ dataDir: dataDir ?? '.federa/coordinator', databaseUrl });
  } catch (error) {
    if (error instanceof DataDirLockedError) {
      throw new CliUsageError(`${error.message}: stop the coordinator first, or issue the token over REST with an admin token`, TOKEN_USAGE);
    }
    throw error;
  }
  try {
    const audit = new AuditLog(db, null);
    const tokens = new Tokens(db, audit);
    if (action === 'create' && request) {
      const issued = await tokens.issue(request, 'cli', (await new Settings(db, audit).current()).tokenMaxLifetimeDays);
      if (values.json) io.stdout(`${JSON.stringify(issued, null, 2)}\n`);
      else {
        io.stdout(`${issued.token}\n`);
        io.stderr(`issued ${issued.role} token ${issued.id} "${issued.name}", valid until ${issued.expiresAt}. It is shown only this once: keep it in a password manager.\n`);
      }
    } else if (action === 'list') {
      const list = await tokens.list();
      if (values.json) io.stdout(`${JSON.stringify(list, null, 2)}\n`);
      else for (const t of list) io.stdout(`${t.id}  ${t.role.padEnd(10)} ${t.status.padEnd(7)} expires ${t.expiresAt}  ${t.name}\n`);
    } else {
      const revoked = await tokens.revoke(positionals[0]!, 'cli');
      io.stdout(`revoked token ${revoked.id} "${revoked.name}" (${revoked.role})\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}
