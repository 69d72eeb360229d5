#!/usr/bin/env node
// Learning quality: the same model trained three ways on the synthetic non-IID consortium with the same budget
// (pooled data in one process, each site alone, and federated with FedAvg and FedProx), every model scored on
// the same mixed held-out set after every budget checkpoint. Repeated for several seeds (each draws its own
// consortium, initial weights and shuffles); the headline figures are the seed means and every seed's own figures
// are kept. FedAvg is also run with sample-level DP-SGD at every site for each target epsilon (the DP rows). Writes
// the figures as JSON and an accuracy-by-round plot as PNG. FedAvg with a server optimizer (the server rows: every
// site steps the decrypted average update with FedAvgM, FedAdagrad, FedAdam or FedYogi, as a study's
// serverOptimizer makes it, optionally with more local epochs per round) runs once per --server-optimizers entry, and
// every method's rounds to plateau are reported.
//   npm run bench -- learning [--rounds 20] [--epochs 2] [--images-per-site 25] [--seeds 1,2,3] [--mu 0.01]
//                             [--architecture small-cnn] [--aggregation ckks|plaintext] [--quick]
//                             [--dp-epsilons 1,3,8|none] [--dp-delta 1e-5] [--dp-clip 1]
//                             [--server-optimizers 'fedavgm:learningRate=1,beta1=0.5;fedavg:localEpochs=4;...'|none]
//                             [--linear logistic-regression,linear-svm|none] [--linear-learning-rate 0.05] [--only-linear]
//                             [--harmonise] [--out bench/results/learning.json] [--plot bench/results/learning.png]
// --harmonise trains and scores every method on images harmonised as a study with statistics.harmonise trains them
// (bench/lib/harmonise.mjs): each hospital's intensities moved onto the consortium's mean and standard deviation.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { accuracyBySource, checkpoint, concatImages, learningPlotSvg, multiSeedResults } from './lib/learning-report.mjs';
import { parseServerOptimizerRows, plateauSummary, serverOptimizerDocument } from './lib/server-rows.mjs';
import { harmoniseConsortium } from './lib/harmonise.mjs';
import { linearResults, linearRowsForSeed, linearSummaryLines, mergeLinearRows } from './lib/learning-linear.mjs';

process.env.FEDERA_LOG_LEVEL ??= 'warn';
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const load = (path) => import(resolve(root, path));
const shared = await load('shared/dist/index.js');
const train = await load('site-agent/dist/train/index.js');
const data = await load('site-agent/dist/data/index.js');
const sim = await load('site-agent/dist/sim/index.js');
const features = await load('site-agent/dist/features/index.js');
const statistics = await load('site-agent/dist/statistics/index.js');
// Loaded after the log level is set: it pulls in the site agent, whose loggers read the level when created.
const { predictProbabilities } = await import('./lib/predict.mjs');

const { values: args } = parseArgs({
  options: {
    architecture: { type: 'string', default: 'small-cnn' },
    rounds: { type: 'string' },
    epochs: { type: 'string' },
    'images-per-site': { type: 'string' },
    holdout: { type: 'string' },
    sites: { type: 'string', default: '4' },
    seeds: { type: 'string' },
    'learning-rate': { type: 'string', default: '0.003' },
    schedule: { type: 'string', default: 'cosine' },
    'batch-size': { type: 'string', default: '8' },
    'class-weights': { type: 'string', default: 'balanced' },
    optimizer: { type: 'string', default: 'adam' },
    mu: { type: 'string', default: '0.01' },
    aggregation: { type: 'string', default: 'ckks' },
    'dp-epsilons': { type: 'string' },
    'dp-delta': { type: 'string', default: '1e-5' },
    'dp-clip': { type: 'string', default: '1' },
    'server-optimizers': { type: 'string' },
    quick: { type: 'boolean', default: false },
    linear: { type: 'string', default: 'logistic-regression,linear-svm' },
    'linear-learning-rate': { type: 'string', default: '0.05' },
    'only-linear': { type: 'boolean', default: false },
    harmonise: { type: 'boolean', default: false },
    out: { type: 'string' },
    plot: { type: 'string' },
  },
});
// --quick is a smoke run of the whole pipeline (seconds); its figures say nothing about learning quality,
// so by default it writes to the temp folder, never over the real results.
const quick = args.quick;
const number = (value, fallback) => {
  const n = Number(value ?? fallback);
  if (!Number.isFinite(n)) throw new RangeError(`not a number: ${value}`);
  return n;
};
const count = (name, value, fallback) => {
  const n = number(value, fallback);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer, got ${value}`);
  return n;
};
const rounds = count('rounds', args.rounds, quick ? 2 : 20);
const epochs = count('epochs', args.epochs, quick ? 1 : 2);
const imagesPerSite = count('images-per-site', args['images-per-site'], quick ? 24 : 25);
const holdoutImages = count('holdout', args.holdout, quick ? 48 : 400);
const sites = count('sites', args.sites);
// Seeds are integers (they seed the generator, the initial weights and the shuffles); duplicates would only
// weight one draw twice in the means.
const seeds = (args.seeds ?? (quick ? '1' : '1,2,3')).split(',').map((v) => {
  const n = Number(v.trim());
  if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new RangeError(`--seeds must be a comma-separated list of non-negative integers, got ${args.seeds}`);
  return n;
});
if (new Set(seeds).size !== seeds.length) throw new RangeError(`--seeds lists a seed twice: ${args.seeds}`);
const mu = number(args.mu);
const aggregation = args.aggregation;
const schedule = args.schedule;
if (!['cosine', 'constant'].includes(schedule)) throw new RangeError(`--schedule must be cosine or constant, got ${schedule}`);
if (!['ckks', 'plaintext'].includes(aggregation)) throw new RangeError(`--aggregation must be ckks or plaintext, got ${aggregation}`);
// Target epsilons of the DP rows, smallest first; 'none' runs no DP. The smoke run trains one, to stay seconds.
const dpEpsilons = (() => {
  const text = (args['dp-epsilons'] ?? (quick ? '3' : '1,3,8')).trim();
  if (text === 'none') return [];
  const list = text.split(',').map((v) => {
    const n = Number(v.trim());
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new RangeError(`--dp-epsilons must be 'none' or a comma-separated list of numbers > 0, got ${text}`);
    return n;
  });
  if (new Set(list).size !== list.length) throw new RangeError(`--dp-epsilons lists an epsilon twice: ${text}`);
  return list.sort((a, b) => a - b);
})();
const dpDelta = number(args['dp-delta']);
if (!(dpDelta > 0 && dpDelta < 1)) throw new RangeError(`--dp-delta must be in (0, 1), got ${args['dp-delta']}`);
const dpClip = number(args['dp-clip']);
if (!(dpClip > 0)) throw new RangeError(`--dp-clip must be > 0, got ${args['dp-clip']}`);
// The server rows, settings checked by the study schema itself. The defaults are the settings a small sweep on this
// benchmark picked (see the README's serverOptimizer); the smoke run trains one.
// The last three rows double the sites' local work per round (localEpochs 4, a study setting), which is what brings
// the rounds down on this benchmark.
const DEFAULT_SERVER_ROWS =
  'fedavgm:learningRate=1,beta1=0.3;fedadagrad:learningRate=0.03,beta1=0,tau=0.01;fedadam:learningRate=0.02,beta1=0,tau=0.01;fedyogi:learningRate=0.02,beta1=0,tau=0.01;' +
  'fedavg:localEpochs=4;fedadagrad:learningRate=0.03,beta1=0,tau=0.01,localEpochs=4;fedyogi:learningRate=0.02,beta1=0,tau=0.01,localEpochs=4';
const serverRows = parseServerOptimizerRows(args['server-optimizers'] ?? (quick ? DEFAULT_SERVER_ROWS.split(';')[0] : DEFAULT_SERVER_ROWS)).map((row) => ({
  ...row,
  settings: row.settings === null ? null : shared.serverOptimizerSchema.parse(row.settings),
}));
const out = resolve(args.out ?? (quick ? join(tmpdir(), 'federa-learning-quick.json') : join(here, 'results/learning.json')));
const plotOut = resolve(args.plot ?? out.replace(/\.json$/, '') + '.png');

// Any registered architecture at its default options; parsed so a bad name fails here, before any data is made.
// The initial weights come from the run's seed.
const specFor = (seed) => shared.parseModelSpec({ architecture: args.architecture, inputSize: 64, channels: 1, classes: 2, seed });
const spec = specFor(seeds[0]);
// The architecture and its options without the seed, for the results: each seed's run has its own.
const { seed: _seedOfFirstRun, ...modelOptions } = spec;
const classNames = [...sim.CLASS_NAMES];
// Identical for every method; only where the data sits differs. Balanced class weights by default: the sites'
// lesion shares run from 30% to 70% while the held-out set is 50/50, and unweighted each site pulls the output
// bias towards its own prevalence, so accuracy at the 0.5 threshold swings with whichever prior won the last round
// (AUC stays near 1 meanwhile). --class-weights none trains unweighted.
const classWeights = args['class-weights'];
if (!['balanced', 'none'].includes(classWeights)) throw new RangeError(`--class-weights must be balanced or none, got ${classWeights}`);
const local = {
  epochs,
  batchSize: number(args['batch-size']),
  learningRate: number(args['learning-rate']),
  optimizer: args.optimizer,
  ...(classWeights === 'balanced' ? { classWeights } : {}),
};
const started = performance.now();
const say = (line) => process.stdout.write(`${line}\n`);

/**
 * Learning rate of round r (1-based). 'cosine' anneals from the base rate towards zero over the rounds (round r at
 * the cosine of (r-1)/rounds, so the last round still learns a little), the same schedule for every method. With a
 * constant rate, and Adam restarting every round, the final model lands anywhere in a band a few points wide, and
 * the comparison would hinge on which round happened to be the last.
 */
function learningRateFor(round, base = local.learningRate) {
  if (schedule === 'constant') return base;
  return base * 0.5 * (1 + Math.cos((Math.PI * (round - 1)) / rounds));
}

/**
 * Seed for one trainLocal call in the run seeded `seed`: the same site and round shuffle the same way in every
 * method (common random numbers).
 */
const callSeed = (seed, round, stream) => shared.deriveSeed(shared.deriveSeed(seed, round), stream);
const POOLED_STREAM = 1000;

// The feature-based rows (bench/lib/learning-linear.mjs): same data, budget and schedule, their own base rate.
// --only-linear runs just them and writes them into the existing results (which must come from the same setup).
const linearArchitectures = args.linear.trim() === 'none' ? [] : args.linear.split(',').map((a) => a.trim());
for (const a of linearArchitectures) {
  if (!shared.ARCHITECTURE_NAMES.includes(a) || !shared.isLinearArchitecture(a)) throw new RangeError(`--linear: ${a} is not a linear architecture`);
}
const onlyLinear = args['only-linear'];
const harmonise = args.harmonise;
if (onlyLinear && linearArchitectures.length === 0) throw new RangeError('--only-linear needs --linear to name at least one architecture');
const linearLearningRate = number(args['linear-learning-rate']);
const linearRateFor = (round) => (learningRateFor(round) * linearLearningRate) / local.learningRate;

async function evaluate(spec, weights, holdout) {
  const probabilities = await predictProbabilities(spec, weights, holdout);
  return shared.metricsFromScores(probabilities, holdout.labels, spec.classes);
}

const fmt = (m) => `accuracy ${(100 * m.accuracy).toFixed(1)}%, AUC ${m.auc === null ? '-' : m.auc.toFixed(3)}`;

/**
 * One dataset trained centrally for `rounds` checkpoints of `epochs` epochs each. trainLocal starts a fresh Adam
 * state at every checkpoint, as each federated round does, so the optimiser behaves alike in every method.
 */
async function centralised(run, label, dataset, stream, holdout, start) {
  const { spec, seed } = run;
  let weights = shared.initialWeights(spec);
  const curve = [start];
  for (let round = 1; round <= rounds; round++) {
    const result = await train.trainLocal(spec, weights, dataset, { ...local, learningRate: learningRateFor(round), seed: callSeed(seed, round, stream) });
    weights = result.weights;
    const metrics = await evaluate(spec, weights, holdout);
    curve.push(checkpoint(round, round * epochs, metrics));
    say(`  ${label} round ${round}/${rounds} (seed ${seed}): ${fmt(metrics)}`);
  }
  return { curve, weights };
}

/**
 * FedAvg over the sites with sample-count weights, through the same shared code a study uses: each site's
 * weightedUpdateVector, encrypted under the consortium's CKKS key and summed as ciphertexts (or summed in the clear
 * with UpdateAccumulator), then nextGlobalModel, as each site applies a decrypted sum (FedAvg, or with `server` the
 * server optimizer's step, its state carried from round to round). `training` adds to every site's trainLocal
 * options: proximalMu > 0 makes it FedProx, privacy makes it DP-SGD at each site (then each site's steps are summed
 * for the accountant), optimizer and learningRate (the schedule's base) replace the sites' own. Also records how far
 * the decrypted aggregate is from the plaintext sum, to show the encryption does not change what is learnt.
 */
async function federated(run, label, siteData, training, holdout, ckks, start, server) {
  const { spec, seed } = run;
  let model = shared.initialGlobalModel(shared.initialWeights(spec), server);
  let global = model.weights;
  const baseRate = training.learningRate ?? local.learningRate;
  const curve = [start];
  let maxAggregateError = 0;
  const privacy = siteData.map(() => ({ sampleRate: 0, steps: 0, clipped: 0 }));
  for (let round = 1; round <= rounds; round++) {
    const plain = new shared.UpdateAccumulator(global.length + 1);
    const encrypted = ckks?.context.createAccumulator(ckks.keys.publicParams);
    for (const [i, dataset] of siteData.entries()) {
      const result = await train.trainLocal(spec, global, dataset, { ...local, ...training, learningRate: learningRateFor(round, baseRate), seed: callSeed(seed, round, i) });
      if (result.privacy) {
        privacy[i].sampleRate = result.privacy.sampleRate;
        privacy[i].steps += result.privacy.steps;
        privacy[i].clipped += result.privacy.clippedFraction / rounds;
      }
      const update = shared.weightedUpdateVector(global, result.weights, result.samples);
      plain.add(update);
      encrypted?.add(ckks.context.encryptVector(update, ckks.keys.secretKey));
    }
    let sum = plain.sum;
    if (encrypted) {
      sum = ckks.context.decryptVector(encrypted.result(), ckks.keys.secretKey);
      for (let k = 0; k < sum.length; k++) maxAggregateError = Math.max(maxAggregateError, Math.abs(sum[k] / sum.at(-1) - plain.sum[k] / plain.sum.at(-1)));
    }
    model = shared.nextGlobalModel(model, sum, 0, server);
    global = model.weights;
    const metrics = await evaluate(spec, global, holdout);
    curve.push(checkpoint(round, round * (training.epochs ?? epochs), metrics));
    say(`  ${label} round ${round}/${rounds} (seed ${seed}): ${fmt(metrics)}`);
  }
  return { curve, weights: global, maxAggregateError, privacy };
}

/**
 * FedAvg with DP-SGD at every site, one run per target epsilon. The noise multiplier is the one that keeps the whole
 * study (every round's steps) within the target at each site, the largest over the sites: the smallest site samples
 * the most of its data per step and spends the most. Each site's spent epsilon is then taken from the steps it
 * actually ran. Batches and noise come from a secure source, not the seed (noise a site could regenerate could be
 * subtracted), so these runs differ from one invocation to the next even at the same seed.
 */
async function privateFederated(run, siteData, siteIds, holdout, ckks, start) {
  const rows = [];
  for (const targetEpsilon of dpEpsilons) {
    const sigmas = siteData.map((d) =>
      shared.noiseMultiplierForEpsilon({ targetEpsilon, delta: dpDelta, sampleRate: local.batchSize / d.count, steps: rounds * epochs * Math.ceil(d.count / local.batchSize) }),
    );
    const noiseMultiplier = Math.max(...sigmas);
    say(`FedAvg + DP-SGD (target epsilon ${targetEpsilon}, delta ${dpDelta.toExponential()}, clip ${dpClip}): noise multiplier ${noiseMultiplier.toFixed(3)}:`);
    const privacy = { clipNorm: dpClip, noiseMultiplier };
    const result = await federated(run, `DP eps ${targetEpsilon}`, siteData, { proximalMu: 0, privacy }, holdout, ckks, start);
    const r4 = (x) => Math.round(x * 1e4) / 1e4;
    const spent = result.privacy.map((p, i) => ({
      site: siteIds[i],
      images: siteData[i].count,
      sampleRate: r4(p.sampleRate),
      steps: p.steps,
      epsilon: r4(shared.epsilonSpent({ sampleRate: p.sampleRate, noiseMultiplier, steps: p.steps, delta: dpDelta }).epsilon),
      clippedFraction: r4(p.clipped),
    }));
    const epsilon = Math.max(...spent.map((s) => s.epsilon));
    say(`  spent epsilon ${spent.map((s) => `${s.site} ${s.epsilon}`).join(', ')}`);
    rows.push({ targetEpsilon, noiseMultiplier, epsilon, curve: result.curve, sites: spent, maxAggregateError: result.maxAggregateError });
  }
  return rows;
}

/** FedAvg with each server optimizer row: every site steps the decrypted average update, as a study's serverOptimizer makes it. */
async function serverFederated(run, siteData, holdout, ckks, start) {
  const rows = [];
  for (const row of serverRows) {
    say(`${row.label}:`);
    const result = await federated(run, row.label, siteData, { proximalMu: 0, ...row.local }, holdout, ckks, start, row.settings ?? undefined);
    rows.push({ label: row.label, curve: result.curve, maxAggregateError: result.maxAggregateError });
  }
  return rows;
}

/**
 * One seed's consortium on disk, loaded through the site agent's own path (DICOM decode, MONOCHROME1 inversion,
 * rescale and resize to 64x64), then deleted: the sites' sets, the mixed held-out set, and which hospital profile
 * each held-out image was drawn from.
 */
async function loadConsortium(seed) {
  const workDir = await mkdtemp(join(tmpdir(), 'federa-bench-learning-'));
  try {
    const consortium = await sim.generateConsortium({ outDir: workDir, sites, imagesPerSite, holdoutImages, seed });
    const loadSet = async (set) => {
      const loaded = await data.loadLabeledDataset({ dir: set.dir, labelsCsv: set.labelsCsv, inputSize: spec.inputSize, channels: 1, classNames });
      if (loaded.rejected.length > 0) throw new Error(`${set.id}: ${loaded.rejected.length} files rejected, first: ${loaded.rejected[0].message}`);
      return loaded;
    };
    const siteSets = [];
    for (const set of consortium.sites) siteSets.push((await loadSet(set)).images);
    const loadedHoldout = await loadSet(consortium.holdout);
    const profileOf = new Map(consortium.holdout.members.map((m) => [m.file, m.profileId]));
    const holdoutSources = loadedHoldout.files.map((file) => {
      const source = profileOf.get(file);
      if (source === undefined) throw new Error(`held-out file ${file} is not one the generator wrote`);
      return source;
    });
    if (!harmonise) return { consortium, siteSets, holdout: loadedHoldout.images, holdoutSources };
    const ids = consortium.sites.map((s) => s.id);
    const harmonised = harmoniseConsortium(statistics, siteSets, loadedHoldout.images, holdoutSources.map((source) => ids.indexOf(source)));
    return { consortium, siteSets: harmonised.siteSets, holdout: harmonised.holdout, holdoutSources };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Every method on one seed's consortium: curves, per-source accuracies, data description and timings. */
async function runSeed(seed, ckks, backend) {
  const run = { seed, spec: specFor(seed) };
  const t0 = performance.now();
  const { consortium, siteSets, holdout, holdoutSources } = await loadConsortium(seed);
  const seconds = { data: (performance.now() - t0) / 1000 };
  const time = async (key, fn) => {
    const t = performance.now();
    const result = await fn();
    seconds[key] = (performance.now() - t) / 1000;
    return result;
  };
  const siteIds = consortium.sites.map((s) => s.id);
  say(
    `seed ${seed}: ${sites} sites x ${imagesPerSite} images (${consortium.sites.map((s) => `${s.id} ${Math.round((100 * s.classCounts.lesion) / s.images)}% lesion`).join(', ')}), ` +
      `held-out ${holdoutImages} mixed; budget ${rounds} rounds x ${epochs} epochs; ${backend.name} backend`,
  );
  if (linearArchitectures.length > 0) say('feature-based linear models:');
  const linear = await time('linear', () =>
    linearRowsForSeed(linearArchitectures, {
      shared, train, features, seed, siteSets, siteIds, holdout, ckks, rounds, epochs, local, learningRateFor: linearRateFor, callSeed, pooledStream: POOLED_STREAM, say,
    }),
  );
  if (onlyLinear) return { seed, linear, data: { seed }, seconds };
  // Round 0: the shared initial model, where every curve starts.
  const start = checkpoint(0, 0, await evaluate(run.spec, shared.initialWeights(run.spec), holdout));
  say('pooled (all sites in one process):');
  const pooled = await time('pooled', () => centralised(run, 'pooled', concatImages(siteSets), POOLED_STREAM, holdout, start));
  say('each site alone:');
  const singleSite = await time('singleSite', async () => {
    const curves = [];
    for (const [i, dataset] of siteSets.entries()) {
      const { curve, weights } = await centralised(run, siteIds[i], dataset, i, holdout, start);
      curves.push({ site: siteIds[i], images: dataset.count, curve, weights });
    }
    return curves;
  });
  say(`FedAvg (${ckks ? 'CKKS-encrypted updates' : 'plaintext updates'}):`);
  const fedavg = await time('fedavg', () => federated(run, 'FedAvg', siteSets, { proximalMu: 0 }, holdout, ckks, start));
  say(`FedProx (mu ${mu}):`);
  const fedprox = await time('fedprox', () => federated(run, 'FedProx', siteSets, { proximalMu: mu }, holdout, ckks, start));
  const dp = await time('dp', () => privateFederated(run, siteSets, siteIds, holdout, ckks, start));
  const server = await time('server', () => serverFederated(run, siteSets, holdout, ckks, start));

  const bySource = async (weights) => accuracyBySource(await predictProbabilities(run.spec, weights, holdout), holdout.labels, holdoutSources, run.spec.classes);
  const singleSiteBySource = {};
  for (const s of singleSite) singleSiteBySource[s.site] = await bySource(s.weights);
  return {
    seed,
    curves: { pooled: pooled.curve, singleSite, fedavg: fedavg.curve, fedprox: fedprox.curve },
    bySource: { pooled: await bySource(pooled.weights), singleSite: singleSiteBySource, fedavg: await bySource(fedavg.weights), fedprox: await bySource(fedprox.weights) },
    dp: dp.map(({ maxAggregateError, ...row }) => row),
    server: server.map(({ maxAggregateError, ...row }) => row),
    linear,
    maxAggregateError: Math.max(fedavg.maxAggregateError, fedprox.maxAggregateError, ...dp.map((d) => d.maxAggregateError), ...server.map((d) => d.maxAggregateError)),
    data: {
      seed,
      sites: consortium.sites.map((s, i) => ({ site: s.id, images: siteSets[i].count, lesion: s.classCounts.lesion, normal: s.classCounts.normal })),
      profiles: consortium.profiles.map((p) => ({
        site: p.id,
        imageSize: p.imageSize,
        noiseSigma: p.noiseSigma,
        contrast: p.contrast,
        lesionFraction: p.lesionFraction,
        lesionAppearance: p.lesionAppearance,
        photometricInterpretation: p.photometricInterpretation,
      })),
      holdout: { images: holdout.count, lesion: consortium.holdout.classCounts.lesion, normal: consortium.holdout.classCounts.normal, mixed: 'round-robin over every site profile' },
    },
    seconds,
  };
}

async function main() {
  const backend = await train.initBackend('auto');
  let ckks;
  if (aggregation === 'ckks') {
    const context = await shared.CkksContext.create();
    ckks = { context, keys: context.generateKeys() };
  }
  try {
    const runs = [];
    for (const seed of seeds) runs.push(await runSeed(seed, ckks, backend));
    if (onlyLinear) return await writeLinearOnly(runs);
    const seconds = { total: (performance.now() - started) / 1000 };
    for (const key of ['data', 'pooled', 'singleSite', 'fedavg', 'fedprox', 'dp', 'server', 'linear']) seconds[key] = runs.reduce((sum, r) => sum + r.seconds[key], 0);

    const results = multiSeedResults({
      runs,
      rounds,
      budget: {
        images: harmonise ? 'harmonised onto the consortium\'s intensity mean and standard deviation (statistics.harmonise)' : 'as the hospitals\' scanners wrote them',
        rounds,
        localEpochsPerRound: epochs,
        epochsPerImage: rounds * epochs,
        description:
          `every method sees each of its images ${rounds * epochs} times: federated ${rounds} rounds x ${epochs} local epochs; ` +
          `pooled and single-site ${rounds} checkpoints x ${epochs} epochs (optimiser state reset at each, as in a round)`,
        ...local,
        learningRateSchedule:
          schedule === 'cosine'
            ? { kind: 'cosine', perRound: Array.from({ length: rounds }, (_, r) => Number(learningRateFor(r + 1).toPrecision(4))) }
            : { kind: 'constant' },
        // The architecture and options; each seed's initial weights come from that seed.
        model: modelOptions,
        seeds,
        aggregation:
          aggregation === 'ckks'
            ? 'FedAvg with sample-count weights over CKKS-encrypted update vectors (shared CkksContext, as a study does by default)'
            : 'FedAvg with sample-count weights over plaintext update vectors',
        maxAbsAggregateErrorFromEncryption: Math.max(...runs.map((r) => r.maxAggregateError)),
      },
      fedprox: { mu },
      dp: {
        method:
          'FedAvg as above (same seeds, data, budget, schedule and aggregation) with sample-level DP-SGD at every site: Poisson-sampled batches ' +
          '(rate batchSize / site images), each example gradient clipped to clipNorm, Gaussian noise noiseMultiplier x clipNorm on the batch sum',
        delta: dpDelta,
        clipNorm: dpClip,
        targetEpsilons: dpEpsilons,
        noiseMultiplierRule:
          'noiseMultiplierForEpsilon for the whole study at each site (sampleRate batchSize / images, steps rounds x epochs x ceil(images / batchSize)), the largest over the sites',
        accountant: "RDP of the Poisson-subsampled Gaussian with Balle et al. 2020's conversion (shared epsilonSpent); a row's epsilon is the most any site spent at any seed",
        reproducible: false,
        note: 'DP rows vary between runs even at the same seed: batch sampling and noise come from a secure source, not the seed, since noise a site could regenerate could be subtracted',
      },
      data: { generator: 'synthetic consortium (site-agent sim), loaded with loadLabeledDataset', perSeed: runs.map((r) => r.data) },
      environment: {
        backend: backend.name,
        backendDetail: backend.detail,
        node: process.version,
        cores: availableParallelism(),
        cpu: cpus()[0]?.model,
        loadAverageAtEnd: loadavg()[0],
      },
      seconds: Object.fromEntries(Object.entries(seconds).map(([k, v]) => [k, Math.round(v * 10) / 10])),
    });
    if (quick) results.quick = 'smoke run: too little data and training for the figures to mean anything';
    Object.assign(results, serverOptimizerDocument(runs, serverRows, results.curves));
    if (linearArchitectures.length > 0) results.linear = linearResults(runs, linearSetup());

    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
    await mkdir(dirname(plotOut), { recursive: true });
    await sharp(Buffer.from(learningPlotSvg(results))).png().toFile(plotOut);
    printSummary(results, seconds.total);
  } finally {
    ckks?.context.dispose();
  }
}

/** What the linear rows share, for the results document. */
function linearSetup() {
  return {
    method:
      'linear models on hand-crafted features of the whole image (first-order, edges, GLCM, LBP; fixed per-feature scale), trained with the ' +
      'same data, held-out set, seeds, rounds x local epochs, batch size, optimiser, class weights, cosine schedule and aggregation as the CNN rows',
    learningRate: linearLearningRate,
  };
}

/** --only-linear: the linear rows alone, written into the results of an earlier full run of the same setup. */
async function writeLinearOnly(runs) {
  const setup = { rounds, epochs, seeds, batchSize: local.batchSize, optimizer: local.optimizer, classWeights, schedule, aggregation, sites, imagesPerSite, holdoutImages };
  const linear = await mergeLinearRows(out, linearResults(runs, linearSetup()), setup, runs.reduce((sum, r) => sum + r.seconds.linear, 0));
  for (const line of linearSummaryLines(linear)) say(line);
  say(`wrote the linear rows into ${out}`);
}

function printSummary(results, totalSeconds) {
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  say(`\nper seed (held-out accuracy): pooled | ${results.seeds[0].singleSite.map((s) => `${s.site} alone`).join(' | ')} | FedAvg | FedProx`);
  for (const s of results.seeds) {
    say(`  seed ${s.seed}: ${pct(s.pooled.accuracy)} | ${s.singleSite.map((x) => pct(x.accuracy)).join(' | ')} | ${pct(s.fedavg.accuracy)} | ${pct(s.fedprox.accuracy)}`);
  }
  say(`mean over ${results.seeds.length} seed${results.seeds.length === 1 ? '' : 's'}:`);
  say(`  pooled ${fmt(results.pooled)}`);
  for (const s of results.singleSite) say(`  ${s.site} alone ${fmt(s)}`);
  say(`  FedAvg ${fmt(results.fedavg)}; FedProx ${fmt(results.fedprox)}`);
  const sourceLine = (name, accs) => `  ${name}: ${Object.entries(accs).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(', ')}`;
  const by = results.heldOutAccuracyBySourceHospital;
  say('held-out accuracy by the hospital each image came from (seed mean):');
  say(sourceLine('pooled', by.pooled));
  for (const [site, accs] of Object.entries(by.singleSite)) say(sourceLine(`${site} alone`, accs));
  say(sourceLine('FedAvg', by.fedavg));
  say(sourceLine('FedProx', by.fedprox));
  const met = (flag) => (flag ? 'MET' : 'NOT met');
  say(
    `targets on the means: federated within 2 points of pooled ${met(results.federatedWithin2PointsOfPooled)}, ` +
      `above the best single site (${results.targets.bestSingleSite}) ${met(results.federatedAboveBestSingleSite)}`,
  );
  say(
    `targets at every seed: within 2 points ${met(results.targetsAtEverySeed.federatedWithin2PointsOfPooled)}, ` +
      `above the best single site ${met(results.targetsAtEverySeed.federatedAboveBestSingleSite)}; ${totalSeconds.toFixed(0)} s`,
  );
  say(`DP rows (FedAvg, seed means; DP figures vary between runs even at the same seed):`);
  const table = [
    ['mode', 'target eps', 'achieved eps', 'delta', 'sigma', 'accuracy', 'AUC'],
    ...results.dp.map((r) => [
      r.mode,
      r.targetEpsilon ?? '-',
      r.epsilon ?? '-',
      r.delta === null ? '-' : r.delta.toExponential(),
      r.noiseMultiplier === undefined ? '-' : r.noiseMultiplier.toFixed(3),
      pct(r.accuracy),
      r.auc === null ? '-' : r.auc.toFixed(3),
    ]),
  ].map((row) => row.map(String));
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  for (const row of table) say(`  ${row.map((cell, c) => cell.padStart(widths[c])).join('  ')}`);
  if (results.linear) for (const line of linearSummaryLines(results.linear)) say(line);
  for (const line of plateauSummary(results)) say(line);
  say(`wrote ${out} and ${plotOut}`);
}

await main();
