import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { describeIssues } from '@federa/shared';

export { COORDINATOR_USAGE } from './usage.js';

const port = z.coerce.number().int().min(0).max(65535);

export const coordinatorConfigSchema = z
  .object({
  /** Address the gRPC listener binds to (and the REST listener, unless httpHost is given). */
  host: z.string().min(1).default('127.0.0.1'),
  /**
   * Address the REST API binds to. Bearer tokens travel in its requests, so keep it on loopback behind a TLS
   * reverse proxy rather than on a network interface.
   */
  httpHost: z.string().min(1).optional(),
  /**
   * Which proxies' X-Forwarded-For to believe (Express's "trust proxy"): "loopback" (a reverse proxy on this
   * machine), a hop count, addresses or subnets, or "false".
   */
  trustProxy: z.string().min(1).max(500).default('loopback'),
  /** Uploads received at once; more wait (unread, held back by gRPC flow control). Bounds the memory they take. */
  maxConcurrentUploads: z.coerce.number().int().min(1).max(1000).default(8),
  /** Threads that check and add encrypted updates (each adds its share of every update's ciphertexts). */
  aggregationThreads: z.coerce
    .number()
    .int()
    .min(1)
    .max(64)
    .default(() => Math.min(16, availableParallelism())),
  /** A site not heard from (heartbeat) for this long is away: not assigned to new rounds. */
  siteAwaySeconds: z.coerce.number().int().min(3).max(3600).default(45),
  /**
   * How long an open round waits for an assigned site that went away before it stops waiting (the site is then
   * listed among the round's failures as disconnected).
   */
  reconnectGraceSeconds: z.coerce.number().int().min(0).max(86_400).default(60),
  /** REST requests per client address per minute before 429; the dashboard and CLIs poll, attackers guess. */
  rateLimitPerMinute: z.coerce.number().int().min(1).max(1_000_000).default(1200),
  /** REST API and dashboard; 0 picks a free port (reported in the ready file and the log). */
  httpPort: port.default(8080),
  /** Site-facing gRPC federation service; 0 picks a free port. */
  grpcPort: port.default(50051),
  /** Holds the embedded database (when no databaseUrl is set) and the content-addressed blobs. */
  dataDir: z.string().min(1).default('.federa/coordinator'),
  /** PostgreSQL connection string; the embedded PGlite database is used when absent. */
  databaseUrl: z.string().url().optional(),
  /** The coordinator kit from `federa provision` (CA, server certificate and key, revocation list). */
  kitDir: z.string().min(1).optional(),
  /** Plaintext gRPC for development only: sites are identified by metadata, not certificates. */
  insecure: z.boolean().default(false),
  /** Written (JSON with the bound ports) once both listeners accept connections. */
  readyFile: z.string().min(1).optional(),
  })
  .superRefine((config, ctx) => {
    if (!config.insecure && !config.kitDir) {
      ctx.addIssue({
        code: 'custom',
        path: ['kitDir'],
        message:
          'mutual TLS needs the coordinator kit: pass --kit <kits/coordinator> (made by `federa provision`), or --insecure for local development only',
      });
    }
    if (config.insecure && config.kitDir) {
      ctx.addIssue({ code: 'custom', path: ['insecure'], message: 'cannot be combined with a kit: choose mutual TLS (--kit) or --insecure' });
    }
  });

export type CoordinatorConfig = z.output<typeof coordinatorConfigSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function parseCoordinatorConfig(input: unknown): CoordinatorConfig {
  const parsed = coordinatorConfigSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(`invalid coordinator configuration:\n  ${describeIssues(parsed.error).join('\n  ')}`);
  }
  return parsed.data;
}

/** The coordinator's flags (described in COORDINATOR_USAGE, which a test holds to this list). */
export const COMMAND_LINE_OPTIONS = {
  host: { type: 'string' },
  'http-host': { type: 'string' },
  'rate-limit': { type: 'string' },
  'trust-proxy': { type: 'string' },
  'site-away': { type: 'string' },
  'reconnect-grace': { type: 'string' },
  'aggregation-threads': { type: 'string' },
  'http-port': { type: 'string' },
  'grpc-port': { type: 'string' },
  'data-dir': { type: 'string' },
  'database-url': { type: 'string' },
  insecure: { type: 'boolean' },
  kit: { type: 'string' },
  'ready-file': { type: 'string' },
} as const;

/** Command-line flags win over FEDERA_* environment variables, which win over defaults. */
export function configFromCommandLine(argv: string[], env: NodeJS.ProcessEnv): CoordinatorConfig {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, options: COMMAND_LINE_OPTIONS }));
  } catch (error) {
    // parseArgs names the flag; say where the list of flags is.
    throw new ConfigError(`${(error as Error).message}; see --help for the flags`);
  }
  return parseCoordinatorConfig({
    host: values.host ?? env.FEDERA_HOST,
    httpHost: values['http-host'] ?? env.FEDERA_HTTP_HOST,
    rateLimitPerMinute: values['rate-limit'] ?? env.FEDERA_RATE_LIMIT,
    trustProxy: values['trust-proxy'] ?? env.FEDERA_TRUST_PROXY,
    siteAwaySeconds: values['site-away'] ?? env.FEDERA_SITE_AWAY_SECONDS,
    reconnectGraceSeconds: values['reconnect-grace'] ?? env.FEDERA_RECONNECT_GRACE_SECONDS,
    aggregationThreads: values['aggregation-threads'] ?? env.FEDERA_AGGREGATION_THREADS,
    httpPort: values['http-port'] ?? env.FEDERA_HTTP_PORT,
    grpcPort: values['grpc-port'] ?? env.FEDERA_GRPC_PORT,
    dataDir: values['data-dir'] ?? env.FEDERA_DATA_DIR,
    databaseUrl: values['database-url'] ?? env.DATABASE_URL,
    insecure: values.insecure ?? (env.FEDERA_INSECURE === '1' || env.FEDERA_INSECURE === 'true' ? true : undefined),
    readyFile: values['ready-file'],
    kitDir: values.kit ?? env.FEDERA_KIT_DIR,
  });
}
