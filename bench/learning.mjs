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
//                             [--harmonise] [--normalise unit|min-max|z-score|histogram-equalisation]
//                             [--out bench/results/learning.json] [--plot bench/results/learning.png]
// --harmonise trains and scores every method on images harmonised as a study with statistics.harmonise trains them
// (bench/lib/harmonise.mjs): each hospital's intensities moved onto the consortium's mean and standard deviation.
// --normalise sets every image's contrast normalisation as a study's preprocessing.normalise does ('unit': as the
// scanner wrote it, in [0, 1]; 'z-score': each image to mean 0 and standard deviation 1).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { accuracyBySource, checkpoint, concatImages, learningPlotSvg, multiSeedResults } from './lib/learning-report.mjs';
import { serverOptimizerDocument } from './lib/server-rows.mjs';
import { fmt, learningSummaryLines } from './lib/learning-summary.mjs';
import { learningOptions } from './lib/learning-options.mjs';
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

// The command line, checked (bench/lib/learning-options.mjs).
const {
  architecture, quick, rounds, epochs, imagesPerSite, holdoutImages, sites, seeds, mu, aggregation, schedule,
  dpEpsilons, dpDelta, dpClip, serverRows, out, plotOut, classWeights, local, linearArchitectures, onlyLinear,
  preprocessing, normalise, harmonise, linearLearningRate,
} = learningOptions(process.argv.slice(2), shared, join(here, 'results/learning.json'));

// Any registered architecture at its default options; parsed so a bad name fails here, before any data is made.
// The initial weights come from the run's seed.
const specFor = (seed) => shared.parseModelSpec({ architecture, inputSize: 64, channels: 1, classes: 2, seed });
const spec = specFor(seeds[0]);
// The architecture and its options without the seed, for the results: each seed's run has its own.
const { seed: _seedOfFirstRun, ...modelOptions } = spec;
const classNames = [...sim.CLASS_NAMES];
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

const linearRateFor = (round) => (learningRateFor(round) * linearLearningRate) / local.learningRate;

async function evaluate(spec, weights, holdout) {
  const probabilities = await predictProbabilities(spec, weights, holdout);
  return shared.metricsFromScores(probabilities, holdout.labels, spec.classes);
}

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
      const loaded = await data.loadLabeledDataset({ dir: set.dir, labelsCsv: set.labelsCsv, inputSize: spec.inputSize, channels: 1, classNames, preprocessing });
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
        normalise,
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
    for (const line of learningSummaryLines(results, seconds.total)) say(line);
    say(`wrote ${out} and ${plotOut}`);
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
  const setup = { rounds, epochs, seeds, batchSize: local.batchSize, optimizer: local.optimizer, classWeights, schedule, aggregation, sites, imagesPerSite, holdoutImages, normalise, harmonise };
  const linear = await mergeLinearRows(out, linearResults(runs, linearSetup()), setup, runs.reduce((sum, r) => sum + r.seconds.linear, 0));
  for (const line of linearSummaryLines(linear)) say(line);
  say(`wrote the linear rows into ${out}`);
}

await main();
