#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { createLogger } from '@federa/shared';
import { SiteAgent } from '../agent/index.js';
import { SiteKitError, siteTransport } from '../client/index.js';
import { loadSiteConfig, SiteConfigError } from '../config/index.js';
import { formatDoctorReport, runDoctor } from '../doctor/index.js';

const USAGE = `usage: federa-site <command> [options]

commands:
  start --config site.yaml    run the site agent: connect to the coordinator and train the rounds it assigns
  doctor --config site.yaml   check the kit, data, state folder, compute backend and coordinator connection
                              (--json for machine-readable output; exit 1 when a check fails)
`;

const log = createLogger('federa-site');

async function start(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, strict: true, options: { config: { type: 'string', short: 'c' } } });
  if (!values.config) throw new UsageError('start needs --config <site.yaml>');
  const config = await loadSiteConfig(values.config);
  const agent = new SiteAgent(config, await siteTransport(config), { onDataProgress: dataProgressBar() });
  const stop = (signal: string): void => {
    log.info({ signal }, 'stopping after the current step');
    agent.stop();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  await agent.run();
}

/** A progress bar on an interactive terminal; on a service's log, the agent's own log lines say enough. */
function dataProgressBar(): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let bar: SingleBar | undefined;
  return (done, total) => {
    if (!bar) {
      bar = new SingleBar({ format: 'reading images [{bar}] {value}/{total} {eta_formatted} left', stream: process.stderr });
      bar.start(total, 0);
    }
    bar.update(done);
    if (done >= total) {
      bar.stop();
      bar = undefined;
    }
  };
}

async function doctor(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } },
  });
  if (!values.config) throw new UsageError('doctor needs --config <site.yaml>');
  const checks = await runDoctor(await loadSiteConfig(values.config));
  process.stdout.write(values.json ? `${JSON.stringify({ checks }, null, 2)}\n` : formatDoctorReport(checks));
  if (checks.some((c) => !c.ok)) process.exitCode = 1;
}

class UsageError extends Error {}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  switch (command) {
    case 'start':
      return start(rest);
    case 'doctor':
      return doctor(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    if (error instanceof UsageError || error instanceof SiteConfigError || error instanceof SiteKitError || (error instanceof TypeError && 'code' in error)) {
      process.stderr.write(`federa-site: ${(error as Error).message}\n${error instanceof UsageError ? USAGE : ''}`);
      process.exit(2);
    }
    log.fatal({ err: error }, 'site agent failed');
    process.exit(1);
  },
);
