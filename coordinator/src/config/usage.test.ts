import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMAND_LINE_OPTIONS, ConfigError, configFromCommandLine, COORDINATOR_USAGE } from './index.js';

const main = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

describe('the coordinator command line', () => {
  it('documents every flag it takes', () => {
    for (const flag of Object.keys(COMMAND_LINE_OPTIONS)) expect(COORDINATOR_USAGE, flag).toMatch(new RegExp(`--${flag}\\b`));
  });

  it('refuses an unknown flag with a configuration error that points to --help', () => {
    expect(() => configFromCommandLine(['--kit', 'k', '--bogus'], {})).toThrow(ConfigError);
    expect(() => configFromCommandLine(['--kit', 'k', '--bogus'], {})).toThrow(/Unknown option '--bogus'; see --help/);
  });

  it('prints its usage and its version, and exits 2 with one plain line on a bad flag', () => {
    const help = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toBe(COORDINATOR_USAGE);
    const version = spawnSync(process.execPath, [main, '--version'], { encoding: 'utf8' });
    expect(version.stdout).toMatch(/^federa-coordinator \d+\.\d+\.\d+\n$/);
    const bad = spawnSync(process.execPath, [main, '--bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe("federa-coordinator: Unknown option '--bogus'; see --help for the flags\n");
  });
});
