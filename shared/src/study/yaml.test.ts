import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ARCHITECTURE_NAMES } from '../model/index.js';
import { parseStudyYaml, StudyFileError, studyDefinitionSchema, studyHash } from './index.js';

const examples = resolve(dirname(fileURLToPath(import.meta.url)), '../../../examples/studies');

function issuesOf(text: string): string[] {
  try {
    parseStudyYaml(text, 'bad.yaml');
  } catch (error) {
    if (error instanceof StudyFileError) return error.issues;
    throw error;
  }
  throw new Error('the file was accepted');
}

const minimal = `name: t
model: {architecture: small-cnn, inputSize: 32, channels: 1, classes: 2, seed: 1}
classNames: [a, b]
rounds: 2
minSites: 2
localEpochs: 1
batchSize: 4
learningRate: 0.01
`;

describe('study definitions from YAML', () => {
  it('has a valid example for every architecture, read as the API reads the same object', async () => {
    const files = (await readdir(examples)).filter((f) => f.endsWith('.yaml')).sort();
    const architectures = new Set<string>();
    for (const file of files) {
      const text = await readFile(join(examples, file), 'utf8');
      const def = parseStudyYaml(text, file);
      architectures.add(def.model.architecture);
      // The same definition as the JSON body would give: same schema, same hash.
      const viaJson = studyDefinitionSchema.parse(JSON.parse(JSON.stringify(def)));
      expect(studyHash(viaJson), file).toBe(studyHash(def));
    }
    expect([...architectures].sort()).toEqual([...ARCHITECTURE_NAMES].sort());
  });

  it('names the file, line and field of a bad value, and of an unknown key', () => {
    const issues = issuesOf(minimal.replace('rounds: 2', 'rounds: 0').replace('batchSize: 4', 'batchSize: 4\nbatchsize: 8'));
    expect(issues).toEqual(
      expect.arrayContaining([expect.stringMatching(/^bad\.yaml:4:9: rounds: /), expect.stringMatching(/^bad\.yaml:\d+:\d+: \(root\): Unrecognized key: "batchsize"/)]),
    );
    expect(issuesOf(minimal.replace('inputSize: 32', 'inputSize: 8'))).toEqual([expect.stringMatching(/^bad\.yaml:2:\d+: model\.inputSize: inputSize must be >= 16/)]);
  });

  it('names a missing field at the object that lacks it', () => {
    expect(issuesOf(minimal.replace('minSites: 2\n', ''))).toEqual([expect.stringMatching(/^bad\.yaml:1:1: minSites: /)]);
  });

  it('refuses YAML errors, duplicate keys, alias bombs and oversized files with the line', () => {
    expect(issuesOf(`${minimal}rounds: 3\n`)[0]).toMatch(/^bad\.yaml:9:1: Map keys must be unique/);
    expect(issuesOf('name: [unclosed\n')[0]).toMatch(/^bad\.yaml:\d+:\d+: /);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`)].join('\n');
    expect(issuesOf(bomb)[0]).toMatch(/alias/i);
    expect(issuesOf(`${minimal}# ${'x'.repeat(300 * 1024)}\n`)[0]).toMatch(/larger than 256 KiB/);
  });
});
