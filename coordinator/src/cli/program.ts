import { Command, CommanderError, Option } from 'commander';
import { AuditBundleError, LedgerError, packageVersion, ReconcileError } from '@federa/shared';
import type { SiteView } from '../studies/studies.service.js';
import { ApiClient, ApiError, type FetchLike } from './api-client.js';
import { auditExport, auditReconcile, auditVerify, type AuditOptions } from './audit-command.js';
import { credentialsPath, CredentialsError, readCredentials } from './credentials.js';
import { CliFailure, CliUsageError, type CliIo } from './io.js';
import { login, logout, whoami } from './login-commands.js';
import { validateStudy } from './study-command.js';
import { createStudy, dropSite, listStudies, showStudy, steerStudy, studyEvaluation, studyMetrics } from './study-commands.js';
import { watchStudy } from './study-watch.js';
import { formatTable } from './table.js';
import { tokenCreate, tokenList, tokenRevoke, type TokenTarget } from './token-command.js';

export const EXIT_CODES_HELP = `
Exit codes: 0 done; 1 the command failed (refused, not found, verification failed, a watched study
ended failed or cancelled); 2 the command was used wrongly; 130 interrupted.
The coordinator and token come from --url/--token, else FEDERA_URL/FEDERA_TOKEN, else \`federa login\`.`;

interface GlobalOptions {
  url?: string;
  token?: string;
  json: boolean;
}

export interface FederaCliContext {
  io: CliIo;
  version: string;
  fetchImpl?: FetchLike;
  /** Ctrl-C: ends `study watch` cleanly. */
  signal?: AbortSignal;
}

/** The coordinator package's version, which `federa --version` prints. */
export function federaVersion(): string {
  return packageVersion(new URL('../../package.json', import.meta.url));
}

/**
 * The `federa` command line: every command has --help and --json; actions return their exit code. Parsing and
 * the mapping of errors to exit codes are in runFedera.
 */
function buildProgram(ctx: FederaCliContext, setCode: (code: number) => void): Command {
  const { io } = ctx;
  const program = new Command('federa')
    .description('Federa for researchers, auditors and admins: studies, their live progress and metrics, tokens and the audit log.')
    .version(`federa ${ctx.version}`, '-V, --version', 'print the version')
    .option('--url <url>', "the coordinator's REST address, e.g. http://127.0.0.1:8080")
    .option('--token <token>', 'a REST token (prefer federa login or FEDERA_TOKEN: a flag shows in the process list)')
    .option('--json', 'print JSON for scripts instead of text', false)
    .exitOverride()
    .configureOutput({ writeOut: (t) => io.stdout(t), writeErr: (t) => io.stderr(t) })
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP);

  const globals = (cmd: Command): GlobalOptions => cmd.optsWithGlobals<GlobalOptions>();
  const run =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      setCode(await fn(...args));
    };
  /** The logged-in client; the saved token goes only to the address it was saved for. */
  const api = async (cmd: Command): Promise<ApiClient> => {
    const g = globals(cmd);
    const saved = await readCredentials(credentialsPath(io.env));
    const url = g.url ?? io.env.FEDERA_URL ?? saved?.url;
    const token = g.token ?? io.env.FEDERA_TOKEN ?? (saved && (!url || url.replace(/\/+$/, '') === saved.url) ? saved.token : undefined);
    if (!url || !token) {
      throw new CliUsageError(`not logged in: run \`federa login --url http://HOST:8080\` (or give --url and --token, or FEDERA_URL and FEDERA_TOKEN)${saved && url ? `; the saved login is for ${saved.url}, not ${url}` : ''}`);
    }
    return new ApiClient({ url, token, ...(saved?.role && saved.token === token ? { role: saved.role } : {}) }, ctx.fetchImpl);
  };

  program
    .command('login')
    .description('check a token against the coordinator and save it (owner-only file) for the other commands')
    .action(run(async (_opts: object, cmd: Command) => {
      const g = globals(cmd);
      return login(io, { url: g.url, token: g.token, json: g.json }, ctx.fetchImpl);
    }));
  program.command('logout').description('forget the saved token').action(run(async (_o: object, cmd: Command) => logout(io, { json: globals(cmd).json })));
  program.command('whoami').description('who the saved token belongs to, and its role').action(run(async (_o: object, cmd: Command) => whoami(await api(cmd), io, globals(cmd))));

  const study = program.command('study').description('define, start, steer, watch and measure studies').addHelpText('after', EXIT_CODES_HELP);
  study
    .command('validate')
    .description('check a study definition file offline and print the hash hospitals approve')
    .argument('<file>', 'a study definition (YAML with comments, or JSON); examples in examples/studies/')
    .action(run(async (file: string, _o: object, cmd: Command) => validateStudy(file, globals(cmd), io)));
  study
    .command('create')
    .description('create a study (a draft) from a definition file; prints the hash each hospital approves')
    .requiredOption('-f, --file <file>', 'the study definition (YAML or JSON)')
    .option('--start', 'start it right away (its sites must have approved the hash already)', false)
    .action(run(async (opts: { file: string; start: boolean }, cmd: Command) => createStudy(await api(cmd), io, opts.file, { ...globals(cmd), start: opts.start })));
  study.command('list').description('every study with its status and round').action(run(async (_o: object, cmd: Command) => listStudies(await api(cmd), io, globals(cmd))));
  study
    .command('show')
    .description("a study's definition, sites and rounds")
    .argument('<id>', 'study id')
    .action(run(async (id: string, _o: object, cmd: Command) => showStudy(await api(cmd), io, id, globals(cmd))));
  for (const [action, text] of [
    ['start', 'start a draft study (its owner only)'],
    ['stop', 'stop a study for good (its owner or an admin)'],
    ['pause', 'let the round in progress finish and open no new one (owner or admin)'],
    ['resume', 'continue a paused study (owner or admin)'],
  ] as const) {
    const command = study.command(action).description(text).argument('<id>', 'study id');
    if (action !== 'start') command.option('--reason <text>', 'why (kept in the audit log)');
    command.action(run(async (id: string, opts: { reason?: string }, cmd: Command) => steerStudy(await api(cmd), io, action, id, { ...globals(cmd), reason: opts.reason })));
  }
  study
    .command('drop-site')
    .description('never assign a site to this study again (owner or admin)')
    .argument('<id>', 'study id')
    .argument('<site>', 'site id')
    .option('--reason <text>', 'why (kept in the audit log)')
    .action(run(async (id: string, site: string, opts: { reason?: string }, cmd: Command) => dropSite(await api(cmd), io, id, site, { ...globals(cmd), reason: opts.reason })));
  study
    .command('watch')
    .description('follow a study live until it ends: progress per round, each site, metrics as they arrive (exit 0 when it completes)')
    .argument('<id>', 'study id')
    .option('--no-live', 'print a line per change instead of redrawing (the default when output is not a terminal)')
    .action(run(async (id: string, opts: { live: boolean }, cmd: Command) => {
      const g = globals(cmd);
      return watchStudy(await api(cmd), id, io, { json: g.json, live: opts.live && io.isTty === true, ...(ctx.signal ? { signal: ctx.signal } : {}) });
    }));
  study
    .command('metrics')
    .description("every round's training metrics per site and federated evaluation per site and global")
    .argument('<id>', 'study id')
    .option('--csv', 'comma-separated values, one row per round and site', false)
    .action(run(async (id: string, opts: { csv: boolean }, cmd: Command) => studyMetrics(await api(cmd), io, id, { ...globals(cmd), csv: opts.csv })));
  study
    .command('evaluation')
    .description("each round's federated evaluation (per site and pooled) and the last round's confusion matrix")
    .argument('<id>', 'study id')
    .addOption(new Option('--round <n>', 'only this round').argParser(wholeNumber('--round')))
    .action(run(async (id: string, opts: { round?: number }, cmd: Command) => studyEvaluation(await api(cmd), io, id, { ...globals(cmd), ...(opts.round !== undefined ? { round: opts.round } : {}) })));

  const site = program.command('site').description("the consortium's sites");
  site
    .command('list')
    .description('every registered site: connected, last heartbeat, backend, data counts')
    .action(run(async (_o: object, cmd: Command) => {
      const sites = await (await api(cmd)).json<SiteView[]>('/api/v1/sites');
      if (globals(cmd).json) io.stdout(`${JSON.stringify(sites, null, 2)}\n`);
      else {
        io.stdout(
          formatTable(
            ['SITE', 'STATUS', 'CONNECTED', 'LAST SEEN', 'BACKEND', 'AGENT', 'IMAGES'],
            sites.map((s) => [s.id, s.status, s.connected ? 'yes' : 'no', s.lastSeenAt.slice(0, 19).replace('T', ' '), s.backend ?? '-', s.agentVersion ?? '-', s.dataset ? String(s.dataset.accepted) : '-']),
          ),
        );
      }
      return 0;
    }));

  const token = program
    .command('token')
    .description('issue, list and revoke REST tokens: over REST as an admin, or offline on the coordinator\'s data (the first admin token)');
  const offline = (c: Command): Command =>
    c
      .option('--data-dir <dir>', "work offline on the coordinator's data folder (stop a coordinator using it first)")
      .option('--database-url <url>', "work offline on the coordinator's PostgreSQL database");
  /** Offline when a data folder or database is named (flag or environment), else over REST with the login. */
  const resolveTarget = async (opts: { dataDir?: string; databaseUrl?: string }, cmd: Command): Promise<TokenTarget> => {
    const dataDir = opts.dataDir ?? io.env.FEDERA_DATA_DIR;
    const databaseUrl = opts.databaseUrl ?? io.env.DATABASE_URL;
    if (dataDir || databaseUrl) return { offline: { dataDir, databaseUrl } };
    const client = await api(cmd);
    return { api: () => client };
  };
  offline(token.command('create').description('issue a token (shown once)'))
    .addOption(new Option('--role <role>', 'what it may do').choices(['admin', 'researcher', 'auditor']).makeOptionMandatory())
    .requiredOption('--name <name>', 'who or what holds it (the audit log names it)')
    .option('--expires-in-days <n>', 'lifetime in days (the settings cap it)')
    .action(run(async (opts: { role: string; name: string; expiresInDays?: string; dataDir?: string; databaseUrl?: string }, cmd: Command) =>
      tokenCreate(await resolveTarget(opts, cmd), { ...opts, json: globals(cmd).json }, io)));
  offline(token.command('list').description('every token: id, role, status, expiry, name (never the secret)')).action(
    run(async (opts: { dataDir?: string; databaseUrl?: string }, cmd: Command) => tokenList(await resolveTarget(opts, cmd), globals(cmd), io)),
  );
  offline(token.command('revoke').description('revoke a token at once').argument('<id>', 'token id (from federa token list)')).action(
    run(async (id: string, opts: { dataDir?: string; databaseUrl?: string }, cmd: Command) => tokenRevoke(await resolveTarget(opts, cmd), id, globals(cmd), io)),
  );

  const audit = program.command('audit').description("check the coordinator's audit log and reconcile it with a site's ledger (auditor or admin)");
  const auditSource = (c: Command): Command =>
    c
      .option('--bundle <file>', 'a signed export (federa audit export) instead of the live log')
      .option('--data-dir <dir>', "read the log offline from the coordinator's data folder")
      .option('--database-url <url>', "read the log offline from the coordinator's PostgreSQL database");
  const auditOptions = async (opts: Record<string, string | undefined>, cmd: Command, needsLive: boolean): Promise<AuditOptions> => {
    const g = globals(cmd);
    const offlineSource = opts.bundle !== undefined || opts.dataDir !== undefined || opts.databaseUrl !== undefined;
    const client = needsLive || !offlineSource ? await api(cmd) : null;
    return {
      json: g.json,
      ...(opts.bundle !== undefined ? { bundle: opts.bundle } : {}),
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      ...(opts.dataDir !== undefined ? { 'data-dir': opts.dataDir } : {}),
      ...(opts.databaseUrl !== undefined ? { 'database-url': opts.databaseUrl } : {}),
      ...(opts.ledger !== undefined ? { ledger: opts.ledger } : {}),
      ...(opts.out !== undefined ? { out: opts.out } : {}),
      ...(opts.previous !== undefined ? { previous: opts.previous } : {}),
      ...(client ? { url: client.target.url, token: client.target.token } : {}),
    };
  };
  auditSource(audit.command('verify').description("check the log's hash chain and signed checkpoints; names the first bad record (exit 1 if any)"))
    .requiredOption('--ca <file>', 'the consortium CA certificate (ca.pem, in every kit)')
    .option('--previous <file>', 'an earlier export the log must still hold unchanged')
    .action(run(async (opts: Record<string, string | undefined>, cmd: Command) => auditVerify(await auditOptions(opts, cmd, false), io)));
  audit
    .command('export')
    .description('save a signed JSON Lines bundle of every record and checkpoint')
    .requiredOption('--out <file>', 'where to write it')
    .action(run(async (opts: Record<string, string | undefined>, cmd: Command) => auditExport(await auditOptions(opts, cmd, true), io)));
  auditSource(audit.command('reconcile').description("match a site's privacy ledger with the coordinator's records and signed receipts"))
    .requiredOption('--ledger <file>', "the site's ledger.jsonl")
    .option('--ca <file>', 'the consortium CA certificate (needed with --bundle; checks signatures)')
    .action(run(async (opts: Record<string, string | undefined>, cmd: Command) => auditReconcile(await auditOptions(opts, cmd, false), io)));

  program
    .command('provision')
    .description("make and maintain the consortium's certificates and keys (federa provision --help)")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments();
  return program;
}

function wholeNumber(flag: string): (value: string) => number {
  return (value) => {
    if (!/^[0-9]{1,9}$/.test(value)) throw new CliUsageError(`${flag} must be a whole number, got "${value}"`);
    return Number(value);
  };
}

/** Runs one command line; returns the exit code (never exits the process, so tests run it in-process). */
export async function runFedera(argv: string[], ctx: FederaCliContext): Promise<number> {
  let code = 0;
  const program = buildProgram(ctx, (c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (error) {
    return exitCodeOf(error, ctx.io);
  }
}

function exitCodeOf(error: unknown, io: CliIo): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return 0;
    // Commander has already printed the message and the hint.
    return 2;
  }
  if (error instanceof CliUsageError) {
    io.stderr(`federa: ${error.message}\n${error.usage ? `\n${error.usage}` : ''}`);
    return 2;
  }
  if (error instanceof ApiError) {
    io.stderr(`federa: ${error.message}\n`);
    for (const issue of error.issues) io.stderr(`  ${issue}\n`);
    return 1;
  }
  if (error instanceof CliFailure || error instanceof CredentialsError || error instanceof LedgerError || error instanceof ReconcileError) {
    io.stderr(`federa: ${error.message}\n`);
    return 1;
  }
  if (error instanceof AuditBundleError) {
    io.stderr(`federa: ${error.message}\n`);
    for (const issue of error.issues) io.stderr(`  ${issue}\n`);
    return 1;
  }
  io.stderr(`federa: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
}
