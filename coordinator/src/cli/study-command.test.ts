import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseStudyYaml, studyHash } from '@federa/shared';
import { readFile } from 'node:fs/promises';
import { runFedera } from './program.js';
import { validateStudy } from './study-command.js';

const examples = resolve(dirname(fileURLToPath(import.meta.url)), '../../../examples/studies');

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t), env: {} }, out, err };
}

describe('federa study validate', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('prints what a valid file defines and the hash hospitals approve', async () => {
    const file = join(examples, 'small-cnn.yaml');
    const { io, out } = capture();
    expect(await validateStudy(file, { json: false }, io)).toBe(0);
    const hash = studyHash(parseStudyYaml(await readFile(file, 'utf8')));
    expect(out.join('')).toContain(`hash        ${hash}`);
    const json = capture();
    expect(await validateStudy(file, { json: true }, json.io)).toBe(0);
    expect(JSON.parse(json.out.join(''))).toMatchObject({ specHash: hash, definition: { model: { architecture: 'small-cnn' } } });
  });

  it('exits 1 naming the line and field of each problem, and a missing field as missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-study-'));
    dirs.push(dir);
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'name: x\nrounds: 0\n');
    const { io, err } = capture();
    expect(await validateStudy(file, { json: false }, io)).toBe(1);
    expect(err.join('')).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:9: rounds: Too small`));
    expect(err.join('')).toMatch(/:1:1: minSites: is required but missing/);
    const wrong = capture();
    expect(await runFedera(['study', 'submit', file], { io: wrong.io, version: '0' })).toBe(2);
    expect(wrong.err.join('')).toMatch(/unknown command 'submit'/);
    const none = capture();
    expect(await runFedera(['study', 'validate'], { io: none.io, version: '0' })).toBe(2);
    expect(none.err.join('')).toMatch(/missing required argument 'file'/);
    const missing = capture();
    expect(await validateStudy(join(dir, 'nope.yaml'), { json: false }, missing.io)).toBe(1);
    expect(missing.err.join('')).toMatch(/cannot read .*nope\.yaml: ENOENT/);
  });
});
