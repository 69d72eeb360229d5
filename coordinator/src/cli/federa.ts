#!/usr/bin/env node
import { AuditBundleError, LedgerError, ReconcileError } from '@federa/shared';
import { generateConsortiumCkksKeys, PROVISION_USAGE, runProvisionCli } from '../provision/index.js';
import { AUDIT_USAGE, auditCommand } from './audit-command.js';
import { CliUsageError, type CliIo } from './io.js';
import { STUDY_USAGE, studyCommand } from './study-command.js';
import { TOKEN_USAGE, tokenCommand } from './token-command.js';

const USAGE = `usage: federa <command> ...

commands:
  provision   make and maintain the consortium's certificates and keys (federa provision --help)
  token       issue, list and revoke REST tokens offline (the first admin token comes from here)
  audit       verify, export and reconcile the coordinator's audit log
  study       check a study definition file before submitting it

${PROVISION_USAGE}
${TOKEN_USAGE}
${AUDIT_USAGE}
${STUDY_USAGE}`;

/** The consortium operator's and auditor's tool: one entry point for administrative commands. */
async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'provision':
      return runProvisionCli(rest, { stdout: process.stdout, stderr: process.stderr, generateCkksKeys: generateConsortiumCkksKeys });
    case 'token':
      return tokenCommand(rest, io);
    case 'audit':
      return auditCommand(rest, io);
    case 'study':
      return studyCommand(rest, io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout(USAGE);
      return command === undefined ? 2 : 0;
    default:
      io.stderr(`federa: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

const io: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof CliUsageError || (error instanceof TypeError && 'code' in error)) {
      process.stderr.write(`federa: ${(error as Error).message}\n${error instanceof CliUsageError ? `\n${error.usage}` : ''}`);
      process.exitCode = 2;
      return;
    }
    const known = error instanceof AuditBundleError || error instanceof LedgerError || error instanceof ReconcileError;
    process.stderr.write(`federa: ${error instanceof Error ? error.message : String(error)}\n`);
    if (known && error instanceof AuditBundleError) for (const issue of error.issues) process.stderr.write(`  ${issue}\n`);
    process.exitCode = 1;
  },
);
