#!/usr/bin/env node
// Segmentation quality: a U-Net trained three ways on the synthetic non-IID consortium's lesion masks (DICOM SEG, as
// the simulator writes them) with the same budget: pooled data in one process, each site alone, and federated with
// FedAvg (sample-count weights); every model scored on the same mixed held-out images. Repeated for several seeds,
// each seed and variant in a worker thread of its own (--jobs at a time; the figures do not depend on it).
//   npm run bench -- segmentation [--rounds 20] [--epochs 2] [--batch-size 2] [--learning-rate 0.003]
//                                 [--images-per-site 25] [--holdout 100] [--seeds 1,2,3] [--width 8] [--depth 3]
//                                 [--harmonise both|on|off] [--normalise unit|min-max|z-score|histogram-equalisation]
//                                 [--jobs <cores>] [--quick] [--out bench/results/segmentation.json]
// Every arm runs twice (--harmonise both): on the images as the hospitals' scanners wrote them ("asAcquired") and
// harmonised as a study with statistics.harmonise trains them ("harmonised", see bench/lib/harmonise.mjs; the headline
// figures). The hospitals' scanners differ in contrast and intensity, and FedAvg averages models each fitted to one.
// --normalise applies a study's contrast normalisation to every image first ('z-score': each to mean 0, sd 1).
// Budget: every arm trains `rounds` x `epochs` epochs over its own images with the same batch size, learning-rate
// schedule (cosine over the rounds) and Adam restarted every round, as a federated round restarts it: pooled and
// FedAvg process the same images equally often (the same compute), a site alone its quarter of them as often.
// "dice" is the held-out set's Dice of the lesion class from its summed pixel counts (what a federated evaluation
// reports), dominated by the large lesions; "lesionImageDice" the mean of the Dice of the held-out images that have a
// lesion (per case, as BraTS-style figures are); "meanImageDice" the mean over all images, where an image with no
// lesion scores 1 when predicted empty and 0 with a single false-positive pixel. "curve": held-out Dice after every
// fifth round, to show whether training still moves. The federated sum is computed in the clear here: the encrypted
// sum gives the same average to within 1e-8 (the learning benchmark measures that), and this benchmark is about what
// the model learns.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { consortiumOptions, positiveInteger, preprocessingWithNormalise } from './lib/cli-options.mjs';
import { harmoniseConsortium } from './lib/harmonise.mjs';

process.env.FEDERA_LOG_LEVEL ??= 'warn';
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const load = (path) => import(resolve(root, path));
const shared = await load('shared/dist/index.js');
const train = await load('site-agent/dist/train/index.js');
const data = await load('site-agent/dist/data/index.js');
const sim = await load('site-agent/dist/sim/index.js');
const statistics = await load('site-agent/dist/statistics/index.js');

const { values: args } = parseArgs({
  args: isMainThread ? process.argv.slice(2) : workerData.argv,
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
    'batch-size': { type: 'string', default: '2' },
    jobs: { type: 'string' },
    harmonise: { type: 'string', default: 'both' },
    normalise: { type: 'string', default: 'unit' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const quick = args.quick;
const { rounds, epochs, imagesPerSite, holdoutImages, sites } = consortiumOptions(args, quick, { imagesPerSite: [8, 25], holdout: [8, 100] });
const seeds = (args.seeds ?? (quick ? '1' : '1,2,3')).split(',').map((v) => positiveInteger('seeds', v.trim()));
const jobs = positiveInteger('jobs', args.jobs, availableParallelism());
// Which images the arms train on: as the hospitals' scanners wrote them, harmonised by the statistics round, or both.
const harmoniseChoices = { both: [true, false], on: [true], off: [false] };
const variants = harmoniseChoices[args.harmonise];
if (!variants) throw new RangeError(`--harmonise must be both, on or off, got ${args.harmonise}`);
// Every image's contrast normalisation, as a study's preprocessing.normalise sets it (checked by the study schema).
const normalise = args.normalise;
const preprocessing = preprocessingWithNormalise(shared, normalise);
const learningRate = Number(args['learning-rate']);
if (!(learningRate > 0)) throw new RangeError(`--learning-rate must be a number > 0, got ${args['learning-rate']}`);
const out = resolve(args.out ?? (quick ? join(tmpdir(), 'federa-segmentation-quick.json') : join(here, 'results/segmentation.json')));
const specFor = (seed) =>
  shared.parseModelSpec({ architecture: 'unet', inputSize: 64, channels: 1, classes: 2, seed, width: positiveInteger('width', args.width), depth: positiveInteger('depth', args.depth) });
// Batches of 2: the optimiser takes as many steps per epoch as there are image pairs. A site alone has 25 images and
// FedAvg averages four sites' steps into one, so the per-epoch step count is what limits them; with batches of 8 a
// site took 4 steps an epoch and neither it nor FedAvg had converged when the budget ran out.
const local = { epochs, batchSize: positiveInteger('batch-size', args['batch-size']), optimizer: 'adam' };
/** Cosine-annealed from the base rate over the rounds, as in the learning benchmark: Adam restarts every round. */
const learningRateFor = (round) => learningRate * 0.5 * (1 + Math.cos((Math.PI * (round - 1)) / rounds));
/** Rounds after which the held-out Dice is recorded in "curve". */
const checkpoints = new Set([...Array.from({ length: Math.floor(rounds / 5) }, (_, i) => 5 * (i + 1)), rounds]);
const say = (line) => process.stdout.write(`${line}\n`);
const round4 = (x) => (x === null ? null : Math.round(x * 1e4) / 1e4);

/** Held-out Dice of the lesion class from summed pixel counts, and the per-image means (see the header). */
async function score(spec, weights, holdout) {
  const probabilities = await train.predictProbabilities(spec, weights, holdout);
  const pixels = holdout.height * holdout.width;
  const counts = shared.segmentationCounts(probabilities, holdout.masks, spec.classes, pixels);
  const metrics = shared.segmentationMetricsFromCounts(counts);
  const evaluation = await train.evaluateModel(spec, weights, holdout);
  let lesionDice = 0;
  let lesionImages = 0;
  for (let n = 0; n < holdout.count; n++) {
    let tp = 0;
    let wrong = 0;
    let truth = 0;
    for (let p = n * pixels; p < (n + 1) * pixels; p++) {
      const predicted = probabilities[2 * p + 1] > probabilities[2 * p] ? 1 : 0;
      truth += holdout.masks[p];
      if (predicted === 1 && holdout.masks[p] === 1) tp++;
      else if (predicted !== holdout.masks[p]) wrong++;
    }
    if (truth === 0) continue;
    lesionDice += (2 * tp) / (2 * tp + wrong);
    lesionImages++;
  }
  return {
    dice: round4(metrics.mean.dice),
    lesionImageDice: round4(lesionImages > 0 ? lesionDice / lesionImages : null),
    meanImageDice: round4(evaluation.accuracy),
    iou: round4(metrics.mean.iou),
    sensitivity: round4(metrics.mean.sensitivity),
    precision: round4(metrics.mean.precision),
  };
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
async function centralised(spec, dataset, seed, stream, holdout) {
  let weights = shared.initialWeights(spec);
  let steps = 0;
  const curve = [];
  for (let round = 1; round <= rounds; round++) {
    const result = await train.trainLocal(spec, weights, dataset, { ...local, learningRate: learningRateFor(round), seed: shared.deriveSeed(shared.deriveSeed(seed, round), stream) });
    weights = result.weights;
    steps += result.steps;
    if (holdout && checkpoints.has(round)) curve.push({ round, dice: (await score(spec, weights, holdout)).dice });
  }
  return { weights, steps, curve };
}

async function federated(spec, siteSets, seed, holdout) {
  let global = shared.initialWeights(spec);
  let steps = 0;
  const curve = [];
  for (let round = 1; round <= rounds; round++) {
    const sum = new shared.UpdateAccumulator(global.length + 1);
    for (const [i, dataset] of siteSets.entries()) {
      const result = await train.trainLocal(spec, global, dataset, { ...local, learningRate: learningRateFor(round), seed: shared.deriveSeed(shared.deriveSeed(seed, round), i) });
      sum.add(shared.weightedUpdateVector(global, result.weights, shared.sampleWeight(result.samples)));
      steps += result.steps;
    }
    global = shared.applyAggregate(global, sum.sum);
    if (checkpoints.has(round)) curve.push({ round, dice: (await score(spec, global, holdout)).dice });
  }
  return { weights: global, steps, curve };
}

async function loadSeed(seed, harmonise) {
  const workDir = await mkdtemp(join(tmpdir(), 'federa-bench-segmentation-'));
  try {
    const consortium = await sim.generateConsortium({ outDir: workDir, sites, imagesPerSite, holdoutImages, seed });
    const loadSet = async (set) => {
      const loaded = await data.loadSegmentationDataset({ dir: set.dir, inputSize: 64, channels: 1, preprocessing, segments: [sim.LESION_SEGMENT], exclude: ['labels.csv'] });
      if (loaded.rejected.length > 0) throw new Error(`${set.id}: ${loaded.rejected.length} files rejected, first: ${loaded.rejected[0].message}`);
      return loaded;
    };
    const siteSets = [];
    for (const set of consortium.sites) siteSets.push((await loadSet(set)).images);
    const loadedHoldout = await loadSet(consortium.holdout);
    const ids = consortium.sites.map((s) => s.id);
    if (!harmonise) return { ids, siteSets, holdout: loadedHoldout.images };
    const profileOf = new Map(consortium.holdout.members.map((m) => [m.file, m.profileId]));
    const holdoutSite = loadedHoldout.files.map((file) => ids.indexOf(profileOf.get(file)));
    return { ids, ...harmoniseConsortium(statistics, siteSets, loadedHoldout.images, holdoutSite) };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function runSeed(seed, harmonise) {
  const started = performance.now();
  const spec = specFor(seed);
  await train.initBackend('wasm');
  const { ids, siteSets, holdout } = await loadSeed(seed, harmonise);
  const lines = [`seed ${seed}, ${harmonise ? 'harmonised' : 'as acquired'}: ${sites} sites x ${imagesPerSite} images, ${holdout.count} held out; unet width ${spec.width} depth ${spec.depth} (${shared.parameterCount(spec)} parameters); ${rounds} rounds x ${epochs} epochs`];
  const pooledRun = await centralised(spec, concat(siteSets), seed, 1000, holdout);
  const pooled = { ...(await score(spec, pooledRun.weights, holdout)), steps: pooledRun.steps, curve: pooledRun.curve };
  lines.push(`  pooled: Dice ${pooled.dice} (${pooled.curve.map((c) => c.dice).join(' ')})`);
  const singleSite = [];
  for (const [i, set] of siteSets.entries()) {
    const run = await centralised(spec, set, seed, i);
    singleSite.push({ site: ids[i], images: set.count, ...(await score(spec, run.weights, holdout)), steps: run.steps });
    lines.push(`  ${ids[i]} alone: Dice ${singleSite.at(-1).dice}`);
  }
  const fedRun = await federated(spec, siteSets, seed, holdout);
  const fedavg = { ...(await score(spec, fedRun.weights, holdout)), steps: fedRun.steps, curve: fedRun.curve };
  lines.push(`  FedAvg: Dice ${fedavg.dice} (${fedavg.curve.map((c) => c.dice).join(' ')})`, `  ${Math.round((performance.now() - started) / 1000)} s`);
  return { result: { seed, harmonised: harmonise, pooled, singleSite, fedavg }, lines };
}

if (!isMainThread) {
  parentPort.postMessage(await runSeed(workerData.seed, workerData.harmonise));
} else {
  const started = performance.now();
  const load1 = loadavg()[0];
  /** Each (seed, variant) in a worker of its own: wasm training is single-threaded, so `jobs` runs use `jobs` cores. */
  const inWorker = ({ seed, harmonise }) =>
    new Promise((resolveRun, reject) => {
      const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { seed, harmonise, argv: process.argv.slice(2) } });
      worker.once('message', resolveRun);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`seed ${seed}'s worker exited with code ${code} before reporting`)));
    });
  const work = variants.flatMap((harmonise) => seeds.map((seed) => ({ seed, harmonise })));
  const runs = new Array(work.length);
  let next = 0;
  const lane = async () => {
    while (next < work.length) {
      const i = next++;
      const { result, lines } = await inWorker(work[i]);
      runs[i] = result;
      say(lines.join('\n'));
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, work.length) }, lane));

  const mean = (values) => Math.round((values.reduce((a, v) => a + v, 0) / values.length) * 1e4) / 1e4;
  const keys = ['dice', 'lesionImageDice', 'meanImageDice', 'iou'];
  /** Seed means of one variant's arms, and whether they meet the issue's targets. */
  const summarise = (variantRuns) => {
    const summary = (pick) => Object.fromEntries(keys.map((key) => [key, mean(variantRuns.map((r) => pick(r)[key]))]));
    const pooled = summary((r) => r.pooled);
    const fedavg = summary((r) => r.fedavg);
    const siteIds = variantRuns[0].singleSite.map((s) => s.site);
    const singleSite = siteIds.map((site) => ({ site, ...summary((r) => r.singleSite.find((s) => s.site === site)) }));
    const best = singleSite.reduce((a, b) => (b.dice > a.dice ? b : a));
    const targets = {
      fedavgWithin002OfPooled: pooled.dice - fedavg.dice <= 0.02,
      fedavgAboveBestSingleSite: fedavg.dice > best.dice,
      bestSingleSite: best.site,
      diceBelowPooled: round4(pooled.dice - fedavg.dice),
    };
    return { pooled, singleSite, fedavg, targets };
  };
  const byVariant = Object.fromEntries(variants.map((harmonise) => [harmonise ? 'harmonised' : 'asAcquired', summarise(runs.filter((r) => r.harmonised === harmonise))]));
  // The headline figures are those of the configuration a multi-scanner study would use: harmonised when it ran.
  const headline = byVariant.harmonised ?? byVariant.asAcquired;
  const results = {
    ...headline,
    variant: byVariant.harmonised ? 'harmonised' : 'asAcquired',
    ...(byVariant.harmonised && byVariant.asAcquired ? { asAcquired: byVariant.asAcquired } : {}),
    seeds: runs,
    budget: {
      rule: 'every arm: rounds x localEpochsPerRound epochs over its own images, same batch size, learning-rate schedule and Adam restarted each round; pooled and FedAvg thus see the same images equally often',
      rounds,
      localEpochsPerRound: epochs,
      ...local,
      learningRate: { base: learningRate, schedule: 'cosine over the rounds' },
      stepsPerSeed: { pooled: runs[0].pooled.steps, singleSite: runs[0].singleSite.map((s) => s.steps), fedavgAllSites: runs[0].fedavg.steps },
      model: { ...specFor(seeds[0]), seed: undefined },
      sites,
      imagesPerSite,
      holdoutImages,
      seeds,
      harmonisation:
        "harmonised: each hospital's images (and each held-out image, by the hospital it came from) moved from the hospital's own intensity mean and standard deviation to the consortium's, as a study with statistics.harmonise trains; asAcquired: the images as the hospitals' scanners wrote them",
      normalise,
      aggregation: 'FedAvg with sample-count weights, summed in the clear',
    },
    environment: { node: process.version, cores: availableParallelism(), jobs, loadAverageAtStart: Math.round(load1 * 100) / 100 },
    seconds: Math.round((performance.now() - started) / 100) / 10,
    ...(quick ? { quick: 'smoke run: too little data and training for the figures to mean anything' } : {}),
  };
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  for (const [name, v] of Object.entries(byVariant)) {
    say(`\n${name}: held-out lesion Dice, mean of ${seeds.length} seed(s): pooled ${v.pooled.dice}, FedAvg ${v.fedavg.dice}, ${v.singleSite.map((s) => `${s.site} alone ${s.dice}`).join(', ')}`);
    say(`  targets: FedAvg within 0.02 of pooled ${v.targets.fedavgWithin002OfPooled ? 'MET' : 'NOT met'}, above the best single site (${v.targets.bestSingleSite}) ${v.targets.fedavgAboveBestSingleSite ? 'MET' : 'NOT met'}`);
  }
  say(`wrote ${out} in ${results.seconds} s`);
}
