#!/usr/bin/env node
import { asksForVersion, versionLine } from '@federa/shared';
import { runSimCli } from './cli.js';
import { runSitesCli } from './sites/index.js';

// Entry point for the `federa-sim` bin; all logic lives in cli.ts and sites/ so it can be tested without spawning.
// `federa-sim sites ...` runs simulated sites; anything else writes a synthetic DICOM consortium.
const io = {
  stdout: (text: string) => process.stdout.write(text),
  stderr: (text: string) => process.stderr.write(text),
};
const [command, ...rest] = process.argv.slice(2);
if (asksForVersion(process.argv.slice(2))) io.stdout(versionLine('federa-sim', new URL('../../package.json', import.meta.url)));
else process.exitCode = command === 'sites' ? await runSitesCli(rest, io) : await runSimCli(process.argv.slice(2), io);
