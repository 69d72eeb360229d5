#!/usr/bin/env node
// Segmentation quality: a U-Net trained three ways on the synthetic non-IID consortium's lesion masks (DICOM SEG, as
// the simulator writes them) with the same budget: pooled data in one process, each site alone, and federated with
// FedAvg (sample-count weights); every model scored on the same mixed held-out images. Repeated for several seeds.
//   npm run bench -- segmentation [--rounds 10] [--epochs 2] [--images-per-site 25] [--holdout 100] [--seeds 1,2,3]
//                                 [--width 8] [--depth 3] [--quick] [--out bench/results/segmentation.json]
// "dice" is the held-out set's Dice of the lesion class from its summed pixel counts (what a federated evaluation
// reports); "meanImageDice" the mean of the images' own Dice (an image with no lesion, predicted empty, scores 1).
// The federated sum is computed in the clear here: the encrypted sum gives the same average to within 1e-8 (the
// learning benchmark measures that), and this benchmark is about what the model learns.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

process.env.FEDERA_LOG_LEVEL ??= 'warn';
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const load = (path) => import(resolve(root, path));
const shared = await load('shared/dist/index.js');
const train = await load('site-agent/dist/train/index.js');
const data = await load('site-agent/dist/data/index.js');
const sim = await load('site-agent/dist/sim/index.js');

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string' },
    epochs: { type: 'string' },
    'images-per-site': { type: 'string' },
    holdout: { type: 'string' },
    sites: { type: 'string', default: '4' },
    seeds: { type: 'string' },
    width: { type: 'string', default: '8' },
    depth: { type: 'string', default: '3' },
    'learning-rate': { type: 'string', default: '0.003' },
    'batch-size': { type: 'string', default: '8' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const quick = args.quick;
const positive = (name, value, fallback) => {
  const n = Number(value ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer, got ${value}`);
  return n;
};
const rounds = positive('rounds', args.rounds, quick ? 2 : 10);
const epochs = positive('epochs', args.epochs, quick ? 1 : 2);
const imagesPerSite = positive('images-per-site', args['images-per-site'], quick ? 8 : 25);
const holdoutImages = positive('holdout', args.holdout, quick ? 8 : 100);
const sites = positive('sites', args.sites);
const seeds = (args.seeds ?? (quick ? '1' : '1,2,3')).split(',').map((v) => positive('seeds', v.trim()));
const learningRate = Number(args['learning-rate']);
if (!(learningRate > 0)) throw new RangeError(`--learning-rate must be a number > 0, got ${args['learning-rate']}`);
const out = resolve(args.out ?? (quick ? join(tmpdir(), 'federa-segmentation-quick.json') : join(here, 'results/segmentation.json')));
const specFor = (seed) =>
  shared.parseModelSpec({ architecture: 'unet', inputSize: 64, channels: 1, classes: 2, seed, width: positive('width', args.width), depth: positive('depth', args.depth) });
const local = { epochs, batchSize: positive('batch-size', args['batch-size']), optimizer: 'adam' };
/** Cosine-annealed from the base rate over the rounds, as in the learning benchmark: Adam restarts every round. */
const learningRateFor = (round) => learningRate * 0.5 * (1 + Math.cos((Math.PI * (round - 1)) / rounds));
const say = (line) => process.stdout.write(`${line}\n`);
const started = performance.now();

/** Held-out Dice of the lesion class from summed pixel counts, and the mean of the images' own Dice. */
async function score(spec, weights, holdout) {
  const probabilities = await train.predictProbabilities(spec, weights, holdout);
  const counts = shared.segmentationCounts(probabilities, holdout.masks, spec.classes, holdout.height * holdout.width);
  const metrics = shared.segmentationMetricsFromCounts(counts);
  const evaluation = await train.evaluateModel(spec, weights, holdout);
  const round4 = (x) => (x === null ? null : Math.round(x * 1e4) / 1e4);
  return { dice: round4(metrics.mean.dice), iou: round4(metrics.mean.iou), sensitivity: round4(metrics.mean.sensitivity), precision: round4(metrics.mean.precision), meanImageDice: round4(evaluation.accuracy) };
}

function concat(sets) {
  const count = sets.reduce((n, s) => n + s.count, 0);
  const { height, width, channels } = sets[0];
  const images = new Float32Array(count * height * width * channels);
  const labels = new Int32Array(count);
  const masks = new Uint8Array(count * height * width);
  let at = 0;
  for (const s of sets) {
    images.set(s.images, at * height * width * channels);
    labels.set(s.labels, at);
    masks.set(s.masks, at * height * width);
    at += s.count;
  }
  return { images, labels, masks, count, height, width, channels };
}

/** One dataset trained for `rounds` checkpoints of `epochs` epochs (fresh Adam each, as a federated round has). */
async function centralised(spec, dataset, seed, stream) {
  let weights = shared.initialWeights(spec);
  for (let round = 1; round <= rounds; round++) {
    weights = (await train.trainLocal(spec, weights, dataset, { ...local, learningRate: learningRateFor(round), seed: shared.deriveSeed(shared.deriveSeed(seed, round), stream) })).weights;
  }
  return weights;
}

async function federated(spec, siteSets, seed) {
  let global = shared.initialWeights(spec);
  for (let round = 1; round <= rounds; round++) {
    const sum = new shared.UpdateAccumulator(global.length + 1);
    for (const [i, dataset] of siteSets.entries()) {
      const result = await train.trainLocal(spec, global, dataset, { ...local, learningRate: learningRateFor(round), seed: shared.deriveSeed(shared.deriveSeed(seed, round), i) });
      sum.add(shared.weightedUpdateVector(global, result.weights, shared.sampleWeight(result.samples)));
    }
    global = shared.applyAggregate(global, sum.sum);
  }
  return global;
}

async function loadSeed(seed) {
  const workDir = await mkdtemp(join(tmpdir(), 'federa-bench-segmentation-'));
  try {
    const consortium = await sim.generateConsortium({ outDir: workDir, sites, imagesPerSite, holdoutImages, seed });
    const loadSet = async (set) => {
      const loaded = await data.loadSegmentationDataset({ dir: set.dir, inputSize: 64, channels: 1, segments: [sim.LESION_SEGMENT], exclude: ['labels.csv'] });
      if (loaded.rejected.length > 0) throw new Error(`${set.id}: ${loaded.rejected.length} files rejected, first: ${loaded.rejected[0].message}`);
      return loaded.images;
    };
    const siteSets = [];
    for (const set of consortium.sites) siteSets.push(await loadSet(set));
    return { ids: consortium.sites.map((s) => s.id), siteSets, holdout: await loadSet(consortium.holdout) };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function runSeed(seed) {
  const spec = specFor(seed);
  const { ids, siteSets, holdout } = await loadSeed(seed);
  say(`seed ${seed}: ${sites} sites x ${imagesPerSite} images, ${holdout.count} held out; unet width ${spec.width} depth ${spec.depth} (${shared.parameterCount(spec)} parameters); ${rounds} rounds x ${epochs} epochs`);
  const pooled = await score(spec, await centralised(spec, concat(siteSets), seed, 1000), holdout);
  say(`  pooled: Dice ${pooled.dice}`);
  const singleSite = [];
  for (const [i, set] of siteSets.entries()) {
    singleSite.push({ site: ids[i], images: set.count, ...(await score(spec, await centralised(spec, set, seed, i), holdout)) });
    say(`  ${ids[i]} alone: Dice ${singleSite.at(-1).dice}`);
  }
  const fedavg = await score(spec, await federated(spec, siteSets, seed), holdout);
  say(`  FedAvg: Dice ${fedavg.dice}`);
  return { seed, pooled, singleSite, fedavg };
}

const mean = (values) => Math.round((values.reduce((a, v) => a + v, 0) / values.length) * 1e4) / 1e4;
const meanOf = (rows, key = 'dice') => mean(rows.map((r) => r[key]));

await train.initBackend('wasm');
const runs = [];
for (const seed of seeds) runs.push(await runSeed(seed));
const siteIds = runs[0].singleSite.map((s) => s.site);
const summary = (pick) => ({ dice: meanOf(runs.map(pick)), meanImageDice: meanOf(runs.map(pick), 'meanImageDice'), iou: meanOf(runs.map(pick), 'iou') });
const pooled = summary((r) => r.pooled);
const fedavg = summary((r) => r.fedavg);
const singleSite = siteIds.map((site) => ({ site, ...summary((r) => r.singleSite.find((s) => s.site === site)) }));
const best = singleSite.reduce((a, b) => (b.dice > a.dice ? b : a));
const results = {
  pooled,
  singleSite,
  fedavg,
  seeds: runs,
  targets: {
    fedavgWithin002OfPooled: pooled.dice - fedavg.dice <= 0.02,
    fedavgAboveBestSingleSite: fedavg.dice > best.dice,
    bestSingleSite: best.site,
    diceBelowPooled: Math.round((pooled.dice - fedavg.dice) * 1e4) / 1e4,
  },
  budget: { rounds, localEpochsPerRound: epochs, ...local, learningRate: { base: learningRate, schedule: 'cosine over the rounds' }, model: { ...specFor(seeds[0]), seed: undefined }, sites, imagesPerSite, holdoutImages, seeds, aggregation: 'FedAvg with sample-count weights, summed in the clear' },
  environment: { node: process.version, cores: availableParallelism() },
  seconds: Math.round((performance.now() - started) / 100) / 10,
  ...(quick ? { quick: 'smoke run: too little data and training for the figures to mean anything' } : {}),
};
await mkdir(dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
say(`\nheld-out lesion Dice, mean of ${seeds.length} seed(s): pooled ${pooled.dice}, FedAvg ${fedavg.dice}, ${singleSite.map((s) => `${s.site} alone ${s.dice}`).join(', ')}`);
say(`targets: FedAvg within 0.02 of pooled ${results.targets.fedavgWithin002OfPooled ? 'MET' : 'NOT met'}, above the best single site (${best.site}) ${results.targets.fedavgAboveBestSingleSite ? 'MET' : 'NOT met'}`);
say(`wrote ${out} in ${results.seconds} s`);
