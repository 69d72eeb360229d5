import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseStudyYaml, resolveStudyDefinition, studyHash } from '@federa/shared';
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

  it('gives the hash of the definition as the coordinator will store it: a privacy target resolved to its noise', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-study-'));
    dirs.push(dir);
    const file = join(dir, 'dp.yaml');
    const text = (await readFile(join(examples, 'small-cnn.yaml'), 'utf8')) + 'privacy: { mode: sample, clipNorm: 1, targetEpsilon: 3, delta: 0.00001, minSamplesPerSite: 500 }\n';
    await writeFile(file, text);
    const { io, out } = capture();
    expect(await validateStudy(file, { json: true }, io)).toBe(0);
    const shown = JSON.parse(out.join('')) as { specHash: string; definition: { privacy: { noiseMultiplier: number } } };
    expect(shown.definition.privacy.noiseMultiplier).toBeGreaterThan(0);
    expect(shown.specHash).toBe(studyHash(resolveStudyDefinition(parseStudyYaml(text))));
    expect(shown.specHash).not.toBe(studyHash(parseStudyYaml(text)));
    await writeFile(file, text.replace('targetEpsilon: 3,', 'targetEpsilon: 0.0000001,'));
    const unreachable = capture();
    expect(await validateStudy(file, { json: false }, unreachable.io)).toBe(1);
    expect(unreachable.err.join('')).toMatch(/dp\.yaml: privacy\.targetEpsilon 1e-7 cannot be reached over 5 rounds/);
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
