import { readFileSync } from 'node:fs';

/**
 * What every Federa command prints for `--version`: its name and the version of the package it ships in, read from
 * that package's package.json (passed as a URL relative to the caller's module, so it holds in src and dist alike).
 */
export function versionLine(name: string, packageJson: URL): string {
  return `${name} ${packageVersion(packageJson)}\n`;
}

/** The `version` of a package.json, or "unknown" when it has none. */
export function packageVersion(packageJson: URL): string {
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown };
  return typeof version === 'string' ? version : 'unknown';
}

/** Whether a command line asks only for the version (`--version`, `-V`, or `version` as the command). */
export function asksForVersion(argv: readonly string[]): boolean {
  return argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version');
}
