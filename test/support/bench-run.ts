import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

/**
 * Runs a benchmark script (bench/<name>.mjs) with `args` in a child process, as `npm run bench -- <name>` does after
 * the build, with the logs quiet; its stdout, stderr and exit status come back.
 */
export function runBench(name: string, ...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [`bench/${name}.mjs`, ...args], { encoding: 'utf8', env: { ...process.env, FEDERA_LOG_LEVEL: 'error' } });
}
