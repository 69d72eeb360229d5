import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `federa-site data inspect` must end by itself: a rejected file once left the process running after it printed
 * the reason. These tests run the built CLI (npx tsc -b site-agent) the way an operator does.
 */

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');
const CLI = join(repoRoot, 'site-agent/dist/cli/main.js');
const DATA = join(repoRoot, 'site-agent/dist/data/index.js');
/** The CLI loads the whole agent (TensorFlow.js, gRPC) before it starts, about 2 s; a hang is anything far past that. */
const EXIT_WITHIN_MS = 10_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs node with `args` and kills it if it is still running well after it should have exited. */
function run(args: readonly string[]): Promise<Run> {
  return new Promise((done, fail) => {
    const started = Date.now();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), 2 * EXIT_WITHIN_MS);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      done({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function expectPromptExit(result: Run, code: number): void {
  // Killed (signal set) means it was still running long after it should have ended.
  expect({ signal: result.signal, code: result.code }, result.stderr).toEqual({ signal: null, code });
  expect(result.ms).toBeLessThan(EXIT_WITHIN_MS);
}

describe('federa-site data inspect exits by itself', () => {
  let dir: string;
  let damaged: string;

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the site agent first (npx tsc -b site-agent)`);
    dir = await mkdtemp(join(tmpdir(), 'federa-inspect-'));
    // A JPEG-LS file with its scan data overwritten: rejected by the WebAssembly codec, the path that once hung.
    const bytes = Buffer.from(await readFile(join(testdata, 'MR_small_jpeg_ls_lossless.dcm')));
    bytes.fill(0xff, bytes.length - 2000, bytes.length - 1000);
    damaged = join(dir, 'damaged-jls.dcm');
    await writeFile(damaged, bytes);
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('exits 1 promptly on rejected files and prints the reason', async () => {
    const cases: Array<[string, RegExp]> = [
      [damaged, /: rejected \(corrupt\): .*the JPEG-LS stream of frame 1 of 1 is damaged and cannot be decoded/],
      [join(testdata, 'MR_truncated.dcm'), /: rejected \(truncated\): .*file ends before the DICOM data it declares/],
      [join(testdata, 'test-SR.dcm'), /: rejected \(no-pixel-data\): /],
    ];
    const results = await Promise.all(cases.map(([file]) => run([CLI, 'data', 'inspect', file])));
    results.forEach((result, i) => {
      expectPromptExit(result, 1);
      expect(result.stdout).toMatch(cases[i]![1]);
    });
  });

  it('exits 0 promptly on good files, with and without a WebAssembly codec', async () => {
    const files = ['CT_small.dcm', 'MR_small_jpeg_ls_lossless.dcm'].map((name) => join(testdata, name));
    const results = await Promise.all(files.map((file) => run([CLI, 'data', 'inspect', file])));
    results.forEach((result, i) => {
      expectPromptExit(result, 0);
      expect(result.stdout).toMatch(new RegExp(`^${files[i]}: decoded\\n`));
    });
  });

  it('--json output carries the rejection reason and exit code 1', async () => {
    const result = await run([CLI, 'data', 'inspect', damaged, '--json']);
    expectPromptExit(result, 1);
    expect(JSON.parse(result.stdout)).toMatchObject({ status: 'rejected', reason: 'corrupt' });
  });

  it('inspecting leaves nothing running: the process ends without process.exit', async () => {
    // The CLI calls process.exit at the end, which would hide a leaked worker, timer or codec handle; a plain
    // script that only inspects must end on its own once the event loop is empty.
    const script = [
      `const { inspectDicomFile } = await import(${JSON.stringify(DATA)});`,
      `for (const file of ${JSON.stringify([damaged, join(testdata, 'MR_truncated.dcm'), join(testdata, 'JPEG2000.dcm')])}) {`,
      '  const result = await inspectDicomFile(file);',
      '  process.stdout.write(`${result.status} ${result.reason ?? ""}\\n`);',
      '}',
    ].join('\n');
    const result = await run(['--input-type=module', '--eval', script]);
    expectPromptExit(result, 0);
    expect(result.stdout).toBe('rejected corrupt\nrejected truncated\ndecoded \n');
  });
});
