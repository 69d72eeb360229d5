import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSimArgs, runSimCli } from './cli.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'federa-sim-cli-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function capture(): { io: { stdout: (t: string) => void; stderr: (t: string) => void }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { stdout: (t) => void (out += t), stderr: (t) => void (err += t) }, out: () => out, err: () => err };
}

describe('parseSimArgs', () => {
  it('applies defaults and converts numbers', () => {
    expect(parseSimArgs(['--out', 'x'])).toEqual({ ok: true, args: { out: 'x', sites: 3, images: 200, holdout: 200, seed: 1, force: false } });
    expect(parseSimArgs(['--out', 'x', '--sites', '5', '--images', '10', '--holdout', '0', '--seed', '42', '--force'])).toEqual({
      ok: true,
      args: { out: 'x', sites: 5, images: 10, holdout: 0, seed: 42, force: true },
    });
  });

  it.each([
    [['--sites', '3'], /--out DIR is required/],
    [['--out', 'x', '--sites', '0'], /--sites must be at least 1/],
    [['--out', 'x', '--sites', '27'], /--sites must be at most 26/],
    [['--out', 'x', '--images', 'ten'], /--images must be a whole number/],
    [['--out', 'x', '--seed=-1'], /--seed must be a whole number/],
    [['--out', 'x', '--seed', '1.5'], /--seed must be a whole number/],
    [['--out', 'x', '--bogus'], /Unknown option '--bogus'/],
  ] as Array<[string[], RegExp]>)('rejects %j', (argv, message) => {
    const result = parseSimArgs(argv);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(message);
  });
});

describe('runSimCli', () => {
  it('generates a consortium and prints a summary to stdout', async () => {
    const c = capture();
    const out = join(root, 'run');
    const code = await runSimCli(['--out', out, '--sites', '2', '--images', '10', '--holdout', '4', '--seed', '3'], c.io);
    expect(c.err()).toBe('');
    expect(code).toBe(0);
    expect(c.out()).toMatch(/Federa synthetic consortium \(seed 3\)/);
    expect(c.out()).toMatch(/hospital-a\s+64\s+MONOCHROME2\s+0\.020\s+3 \(30%\)\s+7\s+10/);
    expect(c.out()).toMatch(/hospital-b\s+72\s+MONOCHROME1\s+0\.035\s+5 \(50%\)\s+5\s+10/);
    expect(c.out()).toMatch(/holdout\s+mixed\s+mixed\s+mixed\s+2 \(50%\)\s+2\s+4/);
    expect(c.out()).toMatch(/24 DICOM files written/);
    expect((await readdir(out)).sort()).toEqual(['holdout', 'hospital-a', 'hospital-b']);

    // Running again into the same folder is refused without --force (exit 1), allowed with it.
    const again = capture();
    expect(await runSimCli(['--out', out, '--sites', '2', '--images', '10', '--holdout', '4'], again.io)).toBe(1);
    expect(again.err()).toMatch(/already exists and is not empty/);
    expect(await runSimCli(['--out', out, '--sites', '2', '--images', '10', '--holdout', '4', '--force'], capture().io)).toBe(0);
  });

  it('exits 2 with usage on bad arguments and 0 on --help', async () => {
    const bad = capture();
    expect(await runSimCli(['--sites', 'x'], bad.io)).toBe(2);
    expect(bad.err()).toMatch(/Usage: federa-sim/);
    const help = capture();
    expect(await runSimCli(['--help'], help.io)).toBe(0);
    expect(help.out()).toMatch(/Usage: federa-sim/);
  });
});
