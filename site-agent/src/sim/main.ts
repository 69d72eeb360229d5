#!/usr/bin/env node
import { runSimCli } from './cli.js';

// Entry point for the `federa-sim` bin; all logic lives in cli.ts so it can be tested without spawning.
process.exitCode = await runSimCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
