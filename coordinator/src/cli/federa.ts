#!/usr/bin/env node
import { createInterface } from 'node:readline/promises';
import { generateConsortiumCkksKeys, runProvisionCli } from '../provision/index.js';
import type { CliIo } from './io.js';
import { federaVersion, runFedera } from './program.js';

/** Reads a line from a terminal without echoing it (a token must not stay on screen); from a pipe, the first line. */
async function readSecret(prompt: string): Promise<string | null> {
  if (!process.stdin.isTTY) {
    let text = '';
    for await (const chunk of process.stdin) text += String(chunk);
    return text.split(/\r?\n/)[0] ?? null;
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  process.stderr.write(prompt);
  // Swallow the echo: readline writes typed characters through _writeToOutput.
  (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = () => undefined;
  try {
    return await rl.question('');
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

const io: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  isTty: process.stdout.isTTY === true,
  readSecret,
};

async function main(argv: string[]): Promise<number> {
  // provision parses its own flags (and prints its own help).
  if (argv[0] === 'provision') {
    return runProvisionCli(argv.slice(1), { stdout: process.stdout, stderr: process.stderr, generateCkksKeys: generateConsortiumCkksKeys });
  }
  const interrupt = new AbortController();
  process.once('SIGINT', () => {
    // `study watch` stops cleanly; anything else still in flight gets two seconds.
    interrupt.abort();
    setTimeout(() => process.exit(130), 2000).unref();
  });
  return runFedera(argv, { io, version: federaVersion(), signal: interrupt.signal });
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
