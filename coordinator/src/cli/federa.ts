#!/usr/bin/env node
import { generateConsortiumCkksKeys, PROVISION_USAGE, runProvisionCli } from '../provision/index.js';

const USAGE = `usage: federa <command> ...

commands:
  provision   make and maintain the consortium's certificates and keys (federa provision --help)

${PROVISION_USAGE}`;

/** The consortium operator's tool: one entry point for administrative commands. */
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'provision':
      return runProvisionCli(rest, { stdout: process.stdout, stderr: process.stderr, generateCkksKeys: generateConsortiumCkksKeys });
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`federa: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`federa: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
