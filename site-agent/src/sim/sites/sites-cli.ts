import { fork } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { CkksWorkerPool, KitError, readSiteKit, type SiteKit } from '@federa/shared';
import type { CliIo } from '../cli.js';
import { SimulatedSite, type SimulatedUpload } from './simulated-site.js';

export const SITES_USAGE = `Usage: federa-sim sites --count N --kits DIR --coordinator HOST:PORT [options]

Runs N lightweight simulated sites against a coordinator: real gRPC with mutual TLS (each site's kit from
DIR/sites/<id>), real CKKS encryption, synthetic updates of each study's size. For load tests and the
scale benchmark; the sites never touch data. Runs until interrupted (Ctrl-C).
Options:
  --count N          simulated sites, taken in name order from DIR/sites (1..1000)
  --kits DIR         the provisioning folder (federa provision --out DIR)
  --coordinator A    the coordinator's gRPC address, host:port
  --server-name S    name to check the coordinator's certificate against (default: the address's host)
  --processes P      spread the sites over P processes (default 1)
  --threads T        encryption threads per process (default: the cores available)
  --json             one JSON line per update sent, on stdout
  --keep-updates D   keep every update sent under D/<site>/ (to check the coordinator's sums)
  --help             show this help
Only for a consortium's test or staging coordinator: simulated sites send made-up updates.
`;

const argsSchema = z.object({
  count: z.coerce.number({ error: '--count must be a number' }).int('--count must be a whole number').min(1, '--count must be at least 1').max(1000, '--count must be at most 1000'),
  kits: z.string({ error: '--kits DIR is required' }).min(1, '--kits DIR is required'),
  coordinator: z.string({ error: '--coordinator HOST:PORT is required' }).regex(/^[^\s:]+:\d{1,5}$/, '--coordinator must be host:port'),
  serverName: z.string().min(1).optional(),
  processes: z.coerce.number().int().min(1, '--processes must be at least 1').max(64, '--processes must be at most 64').default(1),
  threads: z.coerce.number().int().min(1, '--threads must be at least 1').max(256).default(() => availableParallelism()),
  json: z.boolean().default(false),
  keepUpdates: z.string().min(1).optional(),
  /** Internal: this process runs slice i of n (set by --processes). */
  slice: z
    .string()
    .regex(/^\d+\/\d+$/, '--slice must be i/n')
    .transform((s) => s.split('/').map(Number) as [number, number])
    .optional(),
});

type SitesArgs = z.infer<typeof argsSchema>;

/** `federa-sim sites ...`; returns the exit code. Stops on SIGINT/SIGTERM (or when `signal` aborts, in tests). */
export async function runSitesCli(argv: readonly string[], io: CliIo, signal?: AbortSignal): Promise<number> {
  let args: SitesArgs;
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      options: {
        count: { type: 'string' },
        kits: { type: 'string' },
        coordinator: { type: 'string' },
        'server-name': { type: 'string' },
        processes: { type: 'string' },
        threads: { type: 'string' },
        json: { type: 'boolean' },
        'keep-updates': { type: 'string' },
        slice: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
    if (values.help) {
      io.stdout(SITES_USAGE);
      return 0;
    }
    const parsed = argsSchema.safeParse({ ...values, serverName: values['server-name'], keepUpdates: values['keep-updates'] });
    if (!parsed.success) {
      io.stderr(`federa-sim sites: ${parsed.error.issues.map((i) => i.message).join('; ')}\n\n${SITES_USAGE}`);
      return 2;
    }
    args = parsed.data;
  } catch (error) {
    io.stderr(`federa-sim sites: ${(error as Error).message}\n\n${SITES_USAGE}`);
    return 2;
  }
  const stop = stopSignal(signal);
  try {
    const kits = await siteKits(args);
    return args.processes > 1 && !args.slice ? await runProcesses(argv, args, kits.length, io, stop) : await runSites(args, kits, io, stop);
  } catch (error) {
    io.stderr(`federa-sim sites: ${(error as Error).message}\n`);
    return 1;
  }
}

/** The first --count kits in name order (this process's slice of them). */
async function siteKits(args: SitesArgs): Promise<string[]> {
  const dir = join(args.kits, 'sites');
  const names = (await readdir(dir).catch(() => [])).sort();
  if (names.length < args.count) {
    throw new Error(`${dir} holds ${names.length} site kits, fewer than --count ${args.count}: provision more sites first (federa provision --help)`);
  }
  const chosen = names.slice(0, args.count).map((name) => join(dir, name));
  if (!args.slice) return chosen;
  const [i, n] = args.slice;
  return chosen.filter((_, k) => k % n === i);
}

async function runSites(args: SitesArgs, dirs: string[], io: CliIo, stop: Promise<void>): Promise<number> {
  const kits: SiteKit[] = [];
  for (const dir of dirs) {
    try {
      kits.push(await readSiteKit(dir));
    } catch (error) {
      throw new Error(error instanceof KitError ? `site kit ${dir}: ${error.message}` : (error as Error).message);
    }
  }
  const pool = await CkksWorkerPool.create({ threads: args.threads });
  let uploads = 0;
  let errors = 0;
  const sites = kits.map(
    (kit) =>
      new SimulatedSite(kit, {
        address: args.coordinator,
        ...(args.serverName ? { serverName: args.serverName } : {}),
        pool,
        ...(args.keepUpdates ? { keepUpdatesDir: args.keepUpdates } : {}),
        onUpload: (upload: SimulatedUpload) => {
          uploads++;
          if (args.json) io.stdout(`${JSON.stringify({ event: 'upload', ...upload })}\n`);
        },
        onError: (siteId, error) => {
          errors++;
          io.stderr(`\n${siteId}: ${error.message}\n`);
        },
      }),
  );
  const progress = setInterval(() => {
    const connected = sites.filter((s) => s.connected).length;
    io.stderr(`\rsites connected ${connected}/${sites.length} · updates sent ${uploads} · errors ${errors}   `);
  }, 1000);
  try {
    // Connect in small groups, so a hundred sites do not all hit the coordinator in the same instant.
    for (let i = 0; i < sites.length; i += 10) await Promise.all(sites.slice(i, i + 10).map((site) => site.start()));
    if (args.json) io.stdout(`${JSON.stringify({ event: 'connected', sites: sites.length })}\n`);
    await stop;
  } finally {
    clearInterval(progress);
    await Promise.all(sites.map((site) => site.stop()));
    await pool.close();
    io.stderr(`\nstopped ${sites.length} simulated sites after ${uploads} updates\n`);
  }
  return errors > 0 ? 1 : 0;
}

/** Runs the sites in `processes` children (this same command with --slice), passing their lines through. */
async function runProcesses(argv: readonly string[], args: SitesArgs, total: number, io: CliIo, stop: Promise<void>): Promise<number> {
  const script = new URL('../main.js', import.meta.url);
  const children = Array.from({ length: args.processes }, (_, i) =>
    fork(script, ['sites', ...argv, '--slice', `${i}/${args.processes}`, '--threads', String(Math.max(1, Math.floor(args.threads / args.processes)))], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    }),
  );
  const connected = new Set<number>();
  const exits = children.map((child, i) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"event":"connected"')) {
        connected.add(i);
        if (connected.size === children.length) io.stdout(`${JSON.stringify({ event: 'connected', sites: total })}\n`);
      } else io.stdout(`${line}\n`);
    });
    child.stderr!.on('data', (chunk: Buffer) => io.stderr(chunk.toString()));
    return new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  });
  await Promise.race([stop, Promise.all(exits)]);
  for (const child of children) child.kill('SIGTERM');
  const codes = await Promise.all(exits);
  return codes.every((code) => code === 0) ? 0 : 1;
}

function stopSignal(signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    signal?.addEventListener('abort', done, { once: true });
  });
}
