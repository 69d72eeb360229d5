import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { logLevelFromEnv } from '@federa/shared';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'node_modules', '.bin');
const testdata = resolve(root, '..', 'shared', 'testdata', 'dicom');
const version = (pkg: string): string => (JSON.parse(readFileSync(join(root, pkg, 'package.json'), 'utf8')) as { version: string }).version;

/**
 * The shell's PATH without the project's node_modules/.bin: `#!/usr/bin/env node` then finds the machine's own
 * Node.js (20 on these machines), as it does for a hospital's IT typing the command. The bins must still run.
 */
const systemPath = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((entry) => !entry.includes('node_modules'))
  .join(delimiter);

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(join(bin, command), args, { env: { ...process.env, PATH: systemPath, ...env }, cwd: root, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

const COMMANDS = [
  { name: 'federa', pkg: 'coordinator' },
  { name: 'federa-coordinator', pkg: 'coordinator' },
  { name: 'federa-site', pkg: 'site-agent' },
  { name: 'federa-sim', pkg: 'site-agent' },
] as const;

describe('the installed commands', () => {
  it.each(COMMANDS)('$name is a linked bin with --version and --help (exit codes documented), on the shell\'s own node', async ({ name, pkg }) => {
    const v = await run(name, ['--version']);
    expect(v, v.stderr).toMatchObject({ code: 0, stdout: `${name} ${version(pkg)}\n` });
    const help = await run(name, ['--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/usage: /i);
    expect(help.stdout).toMatch(/exit codes/i);
  });

  it('gives every federa-site command its own --help', async () => {
    for (const command of ['init', 'start', 'doctor', 'data', 'studies', 'approve', 'reject', 'ledger', 'model', 'predict']) {
      const help = await run('federa-site', [command, '--help']);
      expect(help.code, `${command}: ${help.stderr}`).toBe(0);
      expect(help.stdout, command).toMatch(new RegExp(`federa-site[\\s\\S]*\\b${command}\\b`));
    }
    const sites = await run('federa-sim', ['sites', '--help']);
    expect(sites.code).toBe(0);
  });

  it('names a log level that does not exist instead of crashing, and goes on', async () => {
    const inspected = await run('federa-site', ['data', 'inspect', join(testdata, 'CT_small.dcm'), '--json'], { FEDERA_LOG_LEVEL: 'verbose' });
    expect(inspected.code, inspected.stderr).toBe(0);
    expect(inspected.stderr).toMatch(/FEDERA_LOG_LEVEL=verbose is not a log level \(trace, debug, info, warn, error, fatal, silent\); logging at info/);
    expect(JSON.parse(inspected.stdout)).toMatchObject({ header: expect.any(Object) });
    const federa = await run('federa', ['study', 'validate', join(root, 'examples/studies/small-cnn.yaml')], { FEDERA_LOG_LEVEL: 'LOUD' });
    expect(federa.code, federa.stderr).toBe(0);
    expect(logLevelFromEnv(' Debug ', 'info')).toBe('debug');
    expect(logLevelFromEnv('', 'warn')).toBe('warn');
    expect(logLevelFromEnv('chatty', 'warn')).toBe('warn');
  });

  it('says to build first when a command is not built, instead of a module-not-found trace', async () => {
    const { launch } = (await import('@federa/shared/launch')) as { launch: (entry: URL, name: string) => Promise<void> };
    expect(typeof launch).toBe('function');
    const missing = await new Promise<{ code: number; stderr: string }>((done) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', `import { launch } from '@federa/shared/launch'; await launch(new URL('file:///nonexistent/entry.js'), 'federa-x');`],
        { cwd: join(root, 'coordinator') },
        (error, _stdout, stderr) => done({ code: error ? Number(error.code) : 0, stderr }),
      );
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/federa-x: \/nonexistent\/entry\.js is not built yet: run `npm run build`/);
  });
});
