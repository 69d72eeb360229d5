import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import {
  applyAggregate,
  contributionVector,
  float32ToBytes,
  initialWeights,
  sampleWeight,
  sha256Hex,
  studyDefinitionJson,
  studyDefinitionSchema,
  type StudyDefinition,
} from '@federa/shared';
import { ModelCache } from '../agent/model-cache.js';
import { modelCommand, predictCommand } from '../cli/model.js';
import { loadLabeledDataset, type LoadedDataset } from '../data/index.js';
import { StudyDecisions } from '../policy/index.js';
import { generateConsortium, type ConsortiumSummary } from '../sim/index.js';
import { evaluateModel, predictProbabilities, trainLocal } from '../train/index.js';
import { ExportedModelError, ModelExportError } from './index.js';

/**
 * A hospital takes the consortium's model home: `federa-site model export` writes a round's decrypted global model
 * as a TensorFlow.js LayersModel with the study's preprocessing beside it, and `federa-site predict` on that export
 * gives exactly the probabilities the site's own evaluation gives for the same images.
 *
 * The global model is a real one: two synthetic hospitals load their images with the study's pipeline, train a
 * round from the study's initial weights, and their updates are aggregated as FedAvg does; site A's state then
 * holds it the way the agent leaves it after decrypting the round (ModelCache, and the definition via
 * StudyDecisions as the TaskGate records it). The coordinator is not needed for what is tested here.
 */

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(repoRoot, 'site-agent/dist/cli/main.js');

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

async function capture(run: (out: (t: string) => void, err: (t: string) => void) => Promise<number>): Promise<Captured> {
  let stdout = '';
  let stderr = '';
  const code = await run(
    (t) => (stdout += t),
    (t) => (stderr += t),
  );
  return { code, stdout, stderr };
}

/** The built CLI, as an operator runs it. */
function cli(args: readonly string[]): Promise<Captured> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(killer);
      done({ code: code ?? -1, stdout, stderr });
    });
  });
}

type Prediction = { file: string; probabilities: Record<string, number>; predicted: string } | { file: string; error: { reason: string; message: string } };

describe('federa-site model export and predict', () => {
  let work: string;
  let data: ConsortiumSummary;
  let def: StudyDefinition;
  let studyHash: string;
  const studyId = randomUUID();
  let global: Float32Array;
  let initial: Float32Array;
  let stateDir: string;
  let configPath: string;
  let outDir: string;
  /** Site A's images as the site loads them (labels, pipeline, tensor cache). */
  let siteImages: LoadedDataset;
  let siteDir: string;

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the site agent first (npx tsc -b site-agent)`);
    work = await mkdtemp(join(tmpdir(), 'federa-model-export-'));
    data = await generateConsortium({ outDir: join(work, 'data'), sites: 2, imagesPerSite: 12, holdoutImages: 0, seed: 21 });
    def = studyDefinitionSchema.parse({
      name: 'export test',
      model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 5 },
      classNames: ['normal', 'lesion'],
      rounds: 3,
      minSites: 2,
      localSteps: 3,
      batchSize: 4,
      learningRate: 0.02,
      aggregation: 'plaintext',
      // Not the defaults, so a predict that ignored the study's pipeline could not match.
      preprocessing: { window: 'none', resize: 'center-crop', cropFraction: 0.9, normalise: 'z-score' },
    });
    const definitionJson = studyDefinitionJson(def);
    studyHash = sha256Hex(Buffer.from(definitionJson, 'utf8'));

    const siteA = data.sites[0]!;
    siteDir = siteA.dir;
    // A PNG among site A's DICOM files: predict reads it through sharp, as the site's loader does.
    const side = 48;
    const gray = Buffer.alloc(side * side);
    for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) gray[y * side + x] = (x * 5 + y * 3 + ((x - 30) ** 2 + (y - 20) ** 2 < 40 ? 120 : 0)) % 256;
    await writeFile(join(siteA.dir, 'extra.png'), await sharp(gray, { raw: { width: side, height: side, channels: 1 } }).png().toBuffer());
    await appendFile(siteA.labelsCsv, 'extra.png,lesion\n');

    // One real FedAvg round: each site trains from the initial model on its own images; the sum of their weighted
    // updates (what the coordinator adds up) applied to the initial model is the round's global model.
    const pipeline = { inputSize: def.model.inputSize, channels: def.model.channels, preprocessing: def.preprocessing, classNames: def.classNames };
    initial = initialWeights(def.model);
    const cohort = data.sites.map((s) => s.id);
    const sum = new Float64Array(initial.length + 1 + cohort.length);
    for (const site of data.sites) {
      const loaded = await loadLabeledDataset({ dir: site.dir, labelsCsv: site.labelsCsv, ...pipeline });
      const trained = await trainLocal(def.model, initial, loaded.images, { steps: 3, batchSize: 4, learningRate: 0.02, optimizer: 'adam', seed: 7 });
      contributionVector(initial, trained.weights, sampleWeight(trained.samples), cohort, site.id).forEach((v, i) => (sum[i]! += v));
    }
    global = applyAggregate(initial, sum, cohort.length);

    stateDir = join(work, 'site-a', 'state');
    await new StudyDecisions(stateDir).remember({ hash: studyHash, studyId, name: def.name, owner: '', definitionJson });
    const cache = new ModelCache(stateDir);
    await cache.write(studyId, 0, initial);
    await cache.write(studyId, 1, global);
    configPath = join(work, 'site-a', 'site.yaml');
    await writeFile(
      configPath,
      toYaml({ site: { id: siteA.id }, coordinator: { address: '127.0.0.1:1', insecure: true }, data: { dir: siteA.dir, labels: siteA.labelsCsv }, stateDir }),
    );
    siteImages = await loadLabeledDataset({ dir: siteA.dir, labelsCsv: siteA.labelsCsv, ...pipeline, cacheDir: join(stateDir, 'tensor-cache') });
    outDir = join(work, 'export');
  }, 60_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('exports the round as a TensorFlow.js LayersModel with the study, preprocessing and weight hash beside it', async () => {
    const run = await capture((out) => modelCommand(['export', '--config', configPath, '--study', studyId, '--round', '1', '--out', outDir, '--json'], out));
    expect(run.code).toBe(0);
    expect((await readdir(outDir)).sort()).toEqual(['federa-model.json', 'group1-shard1of1.bin', 'model.json']);
    const printed = JSON.parse(run.stdout) as { manifest: unknown };
    const manifest = JSON.parse(await readFile(join(outDir, 'federa-model.json'), 'utf8')) as Record<string, unknown>;
    expect(printed.manifest).toEqual(manifest);
    expect(manifest).toMatchObject({
      format: 'federa-model',
      studyId,
      studyName: 'export test',
      studyHash,
      round: 1,
      model: def.model,
      classNames: ['normal', 'lesion'],
      preprocessing: def.preprocessing,
      input: { layout: 'NHWC', dtype: 'float32', shape: [16, 16, 1] },
      weights: { sha256: sha256Hex(float32ToBytes(global)), parameters: global.length },
    });
    // The shard is the site's decrypted global model byte for byte.
    expect(sha256Hex(await readFile(join(outDir, 'group1-shard1of1.bin')))).toBe(sha256Hex(await readFile(new ModelCache(stateDir).path(studyId, 1))));
    const modelJson = JSON.parse(await readFile(join(outDir, 'model.json'), 'utf8')) as { format: string; modelTopology: { class_name: string }; weightsManifest: Array<{ paths: string[] }> };
    expect(modelJson.format).toBe('layers-model');
    expect(modelJson.modelTopology.class_name).toBe('Model');
    expect(modelJson.weightsManifest.map((g) => g.paths)).toEqual([['group1-shard1of1.bin']]);
    // Only the agent's user may read the consortium's model, as with its own copy.
    expect((await stat(join(outDir, 'group1-shard1of1.bin'))).mode & 0o077).toBe(0);
  });

  it('predicts what the site\'s own evaluation of that model gives on the same images, DICOM and PNG alike', async () => {
    const files = siteImages.files.map((f) => join(siteDir, f));
    expect(files.some((f) => f.endsWith('.png'))).toBe(true);
    const run = await capture((out, err) => predictCommand(['--model', outDir, '--json', ...files], out, err));
    expect(run.code, run.stderr).toBe(0);
    const predictions = JSON.parse(run.stdout) as Prediction[];
    expect(predictions.map((p) => p.file)).toEqual(files);

    const site = await predictProbabilities(def.model, global, siteImages.images);
    const classes = def.classNames;
    let correct = 0;
    let loss = 0;
    predictions.forEach((p, i) => {
      if (!('probabilities' in p)) throw new Error(`${p.file}: ${p.error.message}`);
      const values = classes.map((c) => p.probabilities[c]!);
      classes.forEach((_, k) => expect(values[k]).toBeCloseTo(site[i * classes.length + k]!, 6));
      expect(p.predicted).toBe(classes[values[1]! > values[0]! ? 1 : 0]);
      const label = siteImages.images.labels[i]!;
      if (p.predicted === classes[label]) correct++;
      loss -= Math.log(Math.min(1 - 1e-7, Math.max(1e-7, values[label]!)));
    });
    // And the site's evaluation figures follow from the exported model's predictions.
    const evaluation = await evaluateModel(def.model, global, siteImages.images);
    expect(correct / files.length).toBeCloseTo(evaluation.accuracy, 10);
    expect(loss / files.length).toBeCloseTo(evaluation.loss, 5);
    // The round changed the model: an export of the initial weights would not give these.
    const untrained = await predictProbabilities(def.model, initial, siteImages.images);
    expect(Math.max(...untrained.map((v, i) => Math.abs(v - site[i]!)))).toBeGreaterThan(1e-4);

    const table = await capture((out, err) => predictCommand(['--model', outDir, files[0]!], out, err));
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^predicted\s+normal\s+lesion\s+file\n/);
    expect(table.stdout).toContain(files[0]);
  });

  it('names the rounds and studies the site has when asked for one it does not', async () => {
    const exportOf = (study: string, round: string) =>
      capture((out) => modelCommand(['export', '--config', configPath, '--study', study, '--round', round, '--out', join(work, `out-${study}-${round}`)], out));
    await expect(exportOf(studyId, '7')).rejects.toThrow(new RegExp(`study ${studyId} has no global model of round 7 at this site; it has rounds 0, 1 `));
    await expect(exportOf('0b6c1d2e-no-such-study', '1')).rejects.toThrow(
      new RegExp(`study 0b6c1d2e-no-such-study is not in this site's state .*; studies with a saved global model: ${studyId} "export test" \\(rounds 0, 1\\)`),
    );
    await expect(exportOf(studyId, '7')).rejects.toBeInstanceOf(ModelExportError);
    await expect(capture((out) => modelCommand(['export', '--config', configPath, '--study', studyId, '--round', '1', '--out', outDir], out))).rejects.toThrow(
      /already holds an export; give --force/,
    );
    const latest = await capture((out) => modelCommand(['export', '--config', configPath, '--study', studyId, '--round', 'latest', '--out', join(work, 'latest'), '--json'], out));
    expect((JSON.parse(latest.stdout) as { manifest: { round: number } }).manifest.round).toBe(1);
    const list = await capture((out) => modelCommand(['list', '--config', configPath, '--json'], out));
    expect(JSON.parse(list.stdout)).toEqual({ studies: [{ studyId, rounds: [0, 1], name: 'export test' }] });
  });

  it('gives each unreadable file its own error, still predicts the others and exits 1', async () => {
    const good = join(siteDir, siteImages.files[0]!);
    const garbage = join(work, 'garbage.dcm');
    await writeFile(garbage, Buffer.from('this is not an image at all, just text that happens to end in .dcm'));
    const truncated = join(work, 'truncated.png');
    await writeFile(truncated, (await readFile(join(siteDir, 'extra.png'))).subarray(0, 60));
    const missing = join(work, 'missing.png');
    const run = await capture((out, err) => predictCommand(['--model', outDir, '--json', garbage, good, missing, truncated], out, err));
    expect(run.code).toBe(1);
    const predictions = JSON.parse(run.stdout) as Prediction[];
    expect(predictions.map((p) => ('error' in p ? p.error.reason : 'ok'))).toEqual(['not-dicom', 'ok', 'missing-file', 'truncated']);
    const site = await predictProbabilities(def.model, global, { ...siteImages.images, count: 1, images: siteImages.images.images.subarray(0, 16 * 16), labels: siteImages.images.labels.subarray(0, 1) });
    const ok = predictions[1]!;
    if (!('probabilities' in ok)) throw new Error('the readable file was not predicted');
    expect(ok.probabilities.normal).toBeCloseTo(site[0]!, 6);
    expect(predictions[2]).toEqual({ file: missing, error: { reason: 'missing-file', message: `${missing}: no such file` } });
    expect(run.stderr).toContain('3 of 4 files could not be predicted');
  });

  it('refuses an export whose weights were changed after it was written', async () => {
    const copy = join(work, 'tampered');
    await capture((out) => modelCommand(['export', '--config', configPath, '--study', studyId, '--round', '1', '--out', copy], out));
    const shard = join(copy, 'group1-shard1of1.bin');
    const bytes = await readFile(shard);
    bytes[0] = bytes[0]! ^ 0xff;
    await writeFile(shard, bytes);
    await expect(capture((out, err) => predictCommand(['--model', copy, join(siteDir, siteImages.files[0]!)], out, err))).rejects.toThrow(ExportedModelError);
    await expect(capture((out, err) => predictCommand(['--model', join(work, 'nowhere'), 'x.dcm'], out, err))).rejects.toThrow(/federa-model.json is missing/);
  });

  it('works as the built federa-site CLI: help, export and predict with an unreadable file', async () => {
    const help = await cli(['model', 'export', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('federa-site model export --study ID --round N --out DIR');
    expect((await cli(['predict', '--help'])).stdout).toContain('federa-site predict --model DIR');
    const dir = join(work, 'cli-export');
    const exported = await cli(['model', 'export', '--config', configPath, '--study', studyId, '--round', '1', '--out', dir]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toContain(`exported round 1 of study ${studyId} "export test"`);
    const good = join(siteDir, siteImages.files[1]!);
    const garbage = join(work, 'cli-garbage.dcm');
    await writeFile(garbage, 'not an image');
    const predicted = await cli(['predict', '--model', dir, '--json', good, garbage]);
    expect(predicted.code).toBe(1);
    const [first, second] = JSON.parse(predicted.stdout) as Prediction[];
    const inProcess = JSON.parse((await capture((out, err) => predictCommand(['--model', outDir, '--json', good], out, err))).stdout) as Prediction[];
    expect(first).toEqual(inProcess[0]);
    expect(second).toMatchObject({ error: { reason: 'not-dicom' } });
    const unknown = await cli(['model', 'export', '--config', configPath, '--study', studyId, '--round', '9', '--out', join(work, 'nine')]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^federa-site: study .* has no global model of round 9 at this site; it has rounds 0, 1 /);
  });
});
