#!/usr/bin/env node
import { createLogger, versionLine } from '@federa/shared';
import { startCoordinator } from './app/bootstrap.js';
import { ConfigError, configFromCommandLine, COORDINATOR_USAGE } from './config/index.js';

const log = createLogger('coordinator');

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(COORDINATOR_USAGE);
    return;
  }
  if (argv.includes('--version') || argv.includes('-V')) {
    process.stdout.write(versionLine('federa-coordinator', new URL('../package.json', import.meta.url)));
    return;
  }
  const config = configFromCommandLine(argv, process.env);
  const coordinator = await startCoordinator(config);
  const stop = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    coordinator.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`federa-coordinator: ${error.message}\n`);
    process.exit(2);
  }
  log.fatal({ err: error }, 'coordinator failed to start');
  process.exit(1);
});
