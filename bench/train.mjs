#!/usr/bin/env node
// Local training benchmark: training and inference images per second for each classification architecture (at its
// default options) at 64x64 and 128x128 on wasm and at 64x64 on the plain cpu backend (whose convolution gradients
// are two orders of magnitude slower), and one round's time split into data (decode and preprocess), training,
// encryption and upload (to a coordinator on loopback, over mutual TLS), with the site's multiparty work beside it.
// Then wasm training at 1 and 2 worker threads (`threadScaling`) and, where python3 can import torch, the same
// architectures trained in PyTorch on the same number of images (`comparison`): PyTorch is a reference only, never a
// dependency, and without it the comparison is skipped. Last, what DP-SGD costs the same training (`dpCost`).
//   npm run bench -- train [--images 128] [--cpu-images 4] [--backends wasm,cpu] [--sizes 64,128] [--cpu-sizes 64]
//                          [--no-compare] [--compare-models small-cnn,resnet,mobilenet] [--compare-sizes 64,128]
//                          [--compare-threads 1,2] [--compare-repeats 2] [--out bench/results/train.json]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CEILING_SHAPES, federaConvRates, pytorchConvRates } from './lib/conv-ceiling.mjs';
import { dpCostRows } from './lib/dp-cost.mjs';
import { runPytorchJob, torchAvailable } from './lib/pytorch.mjs';

process.env.FEDERA_LOG_LEVEL ??= 'warn';
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const load = (path) => import(resolve(root, path));
const shared = await load('shared/dist/index.js');
const train = await load('site-agent/dist/train/index.js');
const data = await load('site-agent/dist/data/index.js');
const sim = await load('site-agent/dist/sim/index.js');
const client = await load('site-agent/dist/client/index.js');
const coordinatorPkg = await load('coordinator/dist/index.js');
// Imported here, not statically: it loads the site agent, whose loggers read FEDERA_LOG_LEVEL when created.
const { predictProbabilities } = await import('./lib/predict.mjs');

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '128' },
    'cpu-images': { type: 'string', default: '4' },
    backends: { type: 'string', default: 'wasm,cpu' },
    sizes: { type: 'string', default: '64,128' },
    'cpu-sizes': { type: 'string', default: '64' },
    // --no-compare skips PyTorch; the thread scaling is measured either way.
    compare: { type: 'boolean', default: true },
    'compare-models': { type: 'string', default: 'small-cnn,resnet,mobilenet' },
    'compare-sizes': { type: 'string', default: '64,128' },
    'compare-threads': { type: 'string', default: '1,2' },
    'compare-repeats': { type: 'string', default: '2' },
    out: { type: 'string', default: resolve(here, 'results/train.json') },
  },
  allowNegative: true,
});
const images = Number(args.images);
const cpuImages = Number(args['cpu-images']);
const sizes = (list) => list.split(',').map(Number);

function synthetic(count, size) {
  return train.brightSquareImages(count, size, 7);
}

async function throughput(backend, architecture, size) {
  // The plain cpu backend is about 100x slower (a resnet step on 4 images at 64x64 takes ~50 s): a handful of
  // images keeps the run short, and the rate stays comparable.
  const count = backend === 'cpu' ? cpuImages : images;
  // Parsing fills in the architecture's default options, which the results then record.
  const spec = shared.parseModelSpec({ architecture, inputSize: size, channels: 1, classes: 2, seed: 1 });
  const set = synthetic(count, size);
  const weights = shared.initialWeights(spec);
  // wasm sets up an XNNPACK operator per new shape on first use; one small pass keeps that out of the timing. The
  // cpu backend has no such setup, and warming it up would double its long run.
  if (backend !== 'cpu') {
    await train.trainLocal(spec, weights, synthetic(8, size), { epochs: 1, batchSize: 8, learningRate: 0.001, seed: 1, optimizer: 'adam' });
  }
  const t0 = performance.now();
  await train.trainLocal(spec, weights, set, { epochs: 1, batchSize: 16, learningRate: 0.001, seed: 2, optimizer: 'adam' });
  const trainSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  await train.evaluateModel(spec, weights, set);
  const inferSeconds = (performance.now() - t1) / 1000;
  return {
    backend,
    model: architecture,
    inputSize: size,
    parameters: shared.parameterCount(spec),
    images: count,
    trainImagesPerSec: count / trainSeconds,
    inferImagesPerSec: count / inferSeconds,
    spec,
  };
}

async function roundSplit() {
  const dir = await mkdtemp(join(tmpdir(), 'federa-bench-train-'));
  try {
    const generated = await sim.generateConsortium({ outDir: join(dir, 'data'), sites: 1, imagesPerSite: 200, holdoutImages: 0, seed: 3 });
    const site = generated.sites[0];
    await coordinatorPkg.provisionConsortium({
      config: { consortium: { name: 'bench' }, coordinator: { hostnames: ['localhost'], ips: ['127.0.0.1'] }, sites: [{ id: site.id }] },
      outDir: join(dir, 'kits'),
      generateCkksKeys: coordinatorPkg.generateConsortiumCkksKeys,
    });
    const coordinator = await coordinatorPkg.startCoordinator(
      coordinatorPkg.parseCoordinatorConfig({ kitDir: join(dir, 'kits/coordinator'), httpPort: 0, grpcPort: 0, dataDir: join(dir, 'coordinator') }),
    );
    try {
      const spec = { architecture: 'small-cnn', inputSize: 64, channels: 1, classes: 2, seed: 1 };
      const t0 = performance.now();
      const loaded = await data.loadLabeledDataset({ dir: site.dir, labelsCsv: site.labelsCsv, inputSize: 64, channels: 1, classNames: ['normal', 'lesion'] });
      const t1 = performance.now();
      const base = shared.initialWeights(spec);
      const result = await train.trainLocal(spec, base, loaded.images, { epochs: 2, batchSize: 16, learningRate: 0.001, seed: 1, optimizer: 'adam' });
      const t2 = performance.now();
      const kit = await shared.readSiteKit(join(dir, 'kits/sites', site.id));
      const ckks = await shared.CkksContext.fromKey(kit.ckksSecretKey);
      const payload = ckks.encryptVector(shared.weightedUpdateVector(base, result.weights, result.samples), kit.ckksSecretKey);
      const t3 = performance.now();
      ckks.dispose();
      const multiparty = await multipartySiteWork(base, result);
      // Upload as a site does (mutual TLS, 1 MiB chunks, SHA-256 trailer); the coordinator has no study for it,
      // so the refusal arrives after the whole stream was received and checked.
      const transport = await client.siteTransport({
        site: { id: site.id },
        coordinator: { address: `127.0.0.1:${coordinator.grpcPort}`, kit: join(dir, 'kits/sites', site.id), insecure: false },
        data: { dir: site.dir, labels: site.labelsCsv, validationFraction: 0.2 },
        training: { backend: 'auto' },
        stateDir: join(dir, 'state'),
      });
      const federation = new client.FederationClient({ address: `127.0.0.1:${coordinator.grpcPort}`, credentials: transport.credentials, serverName: 'localhost' });
      await federation.register({ agentVersion: 'bench', backend: result.backend, supportedEncodings: [] });
      const t4 = performance.now();
      await federation
        .uploadUpdate({ studyId: 'bench', round: 1, encoding: shared.federation.UpdateEncoding.UPDATE_ENCODING_CKKS, vectorLength: base.length + 1, baseModelSha256: '0'.repeat(64) }, payload)
        .catch(() => undefined);
      const t5 = performance.now();
      federation.close();
      return {
        model: 'small-cnn',
        inputSize: 64,
        images: loaded.images.count,
        epochs: 2,
        backend: result.backend,
        dataSeconds: (t1 - t0) / 1000,
        trainSeconds: (t2 - t1) / 1000,
        encryptSeconds: (t3 - t2) / 1000,
        uploadSeconds: (t5 - t4) / 1000,
        uploadBytes: payload.byteLength,
        multiparty: { ...multiparty, fractionOfTraining: multiparty.totalSeconds / ((t2 - t1) / 1000) },
      };
    } finally {
      await coordinator.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One site's multiparty work for the round just trained (the default aggregation), in a consortium of three: what it
 * does besides training, on its cores as the site agent does it (worker threads only for vectors of 8 ciphertexts or
 * more). Timed: encrypting its update under the collective key (contribution tags, the c1 part's hash, the signed
 * statement), checking the sum it is asked to switch (each site's c1 part hashed and added, the built sum hashed:
 * verifySum), its key-switching share, and decrypting the published model with its tags checked. The other two
 * sites' updates and shares, the coordinator's sum and switch, and the transfers (loopback: milliseconds at this
 * size) are not timed.
 */
async function multipartySiteWork(base, result) {
  const mp = shared;
  const params = mp.deriveMultipartyParameters();
  const ring = mp.ringOf(params);
  const sites = ['hospital-a', 'hospital-b', 'hospital-c'];
  const seed = () => globalThis.crypto.getRandomValues(new Uint8Array(32));
  const scope = { studyId: '00000000-0000-4000-8000-00000000b001', round: 1 };
  const a = mp.commonPolynomial(ring, seed(), { studyId: scope.studyId, epoch: 1 });
  const keys = sites.map(() => mp.keyShare(ring, a, new mp.SeededStream(seed(), 'key')));
  const key = { p: mp.collectivePublicKey(ring, keys.map((k) => k.publicShare)), a };
  const modelSeed = seed();
  const modelKey = mp.modelKeyOf(ring, modelSeed);
  const tagKey = mp.multipartyTagKey(modelSeed);
  const ca = await mp.createRootCa({ commonName: 'bench CA' });
  const certificate = await mp.issueSiteCertificate(ca, { siteId: sites[0] });
  const threading = { threads: availableParallelism(), pool: () => (pool ??= mp.CkksWorkerPool.create({ threads: availableParallelism() })) };
  let pool;
  const sha256 = (bytes) => shared.sha256Hex(bytes);
  const encryptOne = async (siteId, vector) => {
    const tagged = mp.tagVector(vector, ring.n, tagKey, scope, siteId);
    const update = await mp.encryptUpdateThreaded(ring, params, key, 1, tagged, new mp.SeededStream(seed(), 'encrypt'), threading);
    const statement = { epoch: 1, ...scope, siteId, parameters: mp.multipartyFingerprint(params), updateSha256: sha256(update), c1Sha256: mp.updateC1Sha256(ring, params, update) };
    mp.signContribution(statement, certificate.privateKeyPem, certificate.certificatePem);
    return update;
  };
  const own = mp.contributionVector(base, result.weights, mp.sampleWeight(result.samples), sites, sites[0]);
  const others = sites.slice(1).map((siteId) => mp.contributionVector(base, result.weights, mp.sampleWeight(result.samples), sites, siteId));
  // Untimed: the first call of each operation compiles it.
  await encryptOne(sites[0], own);
  const t0 = performance.now();
  const update = await encryptOne(sites[0], own);
  const t1 = performance.now();
  const updates = [update, ...(await Promise.all(others.map((v, i) => encryptOne(sites[i + 1], v))))];
  const header = { epoch: 1, valueCount: mp.readPayloadHeader(params, update).valueCount };
  const sum = await mp.sumUpdatesThreaded(ring, params, header, updates, threading);
  const parts = updates.map((u) => mp.updateC1Part(ring, params, u, header));
  const signed = parts.map(sha256);
  const t2 = performance.now();
  const total = new mp.C1PartSum(ring, params, header);
  for (const [i, part] of parts.entries()) {
    if (sha256(part) !== signed[i]) throw new Error('a c1 part is not the one signed');
    total.add(part);
  }
  const built = total.encode();
  if (sha256(built) !== sha256(sum.c1)) throw new Error('the c1 parts do not add up to the sum');
  const t3 = performance.now();
  const share = await mp.shareForSumThreaded(ring, params, keys[0].secret, modelKey, built, new mp.SeededStream(seed(), 'switch'), threading);
  const t4 = performance.now();
  const shares = [share, ...(await Promise.all(keys.slice(1).map((k) => mp.shareForSumThreaded(ring, params, k.secret, null, sum.c1, new mp.SeededStream(seed(), 'switch'), threading))))];
  const model = await mp.switchedModelThreaded(ring, params, header, sum.c0, sum.c1, shares, threading);
  const t5 = performance.now();
  const tagged = await mp.decryptModelThreaded(ring, params, model, modelKey, { epoch: 1 }, threading);
  const problems = mp.tagProblems(tagged, ring.n, tagKey, scope, sites);
  const t6 = performance.now();
  if (problems.length > 0) throw new Error(`the decrypted model's tags do not check out: ${problems[0]}`);
  await (await pool)?.close();
  const seconds = { encryptSeconds: (t1 - t0) / 1000, verifySumSeconds: (t3 - t2) / 1000, keySwitchSeconds: (t4 - t3) / 1000, decryptSeconds: (t6 - t5) / 1000 };
  return {
    sites: sites.length,
    parameters: base.length,
    ...seconds,
    totalSeconds: Object.values(seconds).reduce((a, b) => a + b, 0),
    uploadBytes: update.byteLength + share.byteLength,
    downloadBytes: parts.reduce((n, p) => n + p.byteLength, 0) + model.byteLength,
  };
}

/** Framework-neutral layer lists, the ones the site agent's tfjs builder and the PyTorch reference both follow. */
const LAYERS = { 'small-cnn': shared.smallCnnLayers, resnet: shared.resnetLayers, mobilenet: shared.mobilenetLayers };
/** Images per timed training, in batches of 16: 128 up to 64x64, 64 above (128x128 trains about 4x slower). */
const compareImages = (size) => (size <= 64 ? 128 : 64);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/**
 * Federa (wasm, data-parallel worker threads) against PyTorch (its own intra-op threads) on the same architectures:
 * one epoch of Adam (lr 0.001) in batches of 16 on 128 images at 64x64 and 64 at 128x128, at 1 and 2 threads.
 * The two alternate (Federa, PyTorch, Federa, PyTorch, ...) so that other work on the machine slows both alike, and
 * each figure is the median of the repeats. Federa's time is trainLocal's whole call, as a site sees it; PyTorch's is
 * its training loop, its process start (about 1 s to import torch) and model construction left out. Each PyTorch
 * job first checks, untimed, that its network has Federa's parameter count and, once per model and size, computes
 * Federa's outputs for Federa's weights (else the bench fails). On 2 cores the default three models take about
 * 2.5 to 3 minutes (145 s, and 185 s with other work loading the machine; small-cnn and resnet alone about two
 * thirds of that), some 30 s of it starting PyTorch's 24 processes (about 1.2 s each to import torch). PyTorch runs with its defaults (GNU OpenMP threads spin while they wait): on a busy machine
 * its 2-thread figure can collapse when another process holds a core (88 against 976 img/s seen for small-cnn at
 * 64x64); OMP_WAIT_POLICY=PASSIVE in the environment steadies it, at some cost on a quiet machine.
 */
async function compareWithPytorch() {
  const list = (value) => value.split(',').map((v) => v.trim()).filter(Boolean);
  const models = list(args['compare-models']);
  // Classification networks only: trainLocal and the PyTorch reference train per-image labels (a U-Net is
  // segmentation), and the reference rebuilds the network from its layer list (a linear model on features has none).
  const networks = shared.CLASSIFICATION_ARCHITECTURES.filter((m) => !shared.isLinearArchitecture(m));
  const unknown = models.filter((m) => !networks.includes(m));
  if (unknown.length > 0) {
    throw new Error(`--compare-models: ${unknown.join(', ')} not among the classification networks ${networks.join(', ')}`);
  }
  const inputSizes = list(args['compare-sizes']).map(Number);
  const threadCounts = list(args['compare-threads']).map(Number);
  const repeats = Number(args['compare-repeats']);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--compare-repeats must be a positive integer, got ${args['compare-repeats']}`);
  const torch = args.compare ? torchAvailable() : { available: false, reason: 'turned off with --no-compare' };
  if (!torch.available) process.stdout.write(`PyTorch comparison skipped: ${torch.reason}\n`);
  else process.stdout.write(`PyTorch ${torch.version} (${torch.python}) as the reference\n`);
  await train.initBackend('wasm');
  const compareStarted = performance.now();
  const runs = [];
  for (const model of models) {
    for (const size of inputSizes) {
      const spec = shared.parseModelSpec({ architecture: model, inputSize: size, channels: 1, classes: 2, seed: 1 });
      const parameters = shared.parameterCount(spec);
      const count = compareImages(size);
      const set = train.brightSquareImages(count, size, 7);
      const weights = shared.initialWeights(spec);
      const job = {
        architecture: model,
        layers: LAYERS[model](spec),
        inputSize: size,
        channels: spec.channels,
        classes: spec.classes,
        parameters,
        images: count,
        batchSize: 16,
        learningRate: 0.001,
        seed: 2,
      };
      let verify = torch.available ? await verification(spec, weights) : undefined;
      for (const threads of threadCounts) {
        const options = { epochs: 1, batchSize: 16, learningRate: 0.001, seed: 2, optimizer: 'adam', threads };
        // Untimed: starts the threads and sets up XNNPACK's operators for the timed batches' shapes (16 images, or
        // each thread's share of them).
        await train.trainLocal(spec, weights, train.brightSquareImages(16, size, 1), options);
        const federa = [];
        const pytorch = [];
        for (let r = 0; r < repeats; r++) {
          const t0 = performance.now();
          const result = await train.trainLocal(spec, weights, set, options);
          federa.push(count / ((performance.now() - t0) / 1000));
          if (result.threads !== threads) throw new Error(`trainLocal trained on ${result.threads} threads, not the ${threads} asked for`);
          if (torch.available) {
            // The job trains the whole set after one untimed warm-up step in its own fresh process.
            const out = runPytorchJob({ ...job, threads, ...(verify ? { verify } : {}) });
            if (out.parameters !== parameters) throw new Error(`PyTorch ${model} has ${out.parameters} parameters, Federa's ${parameters}`);
            if (verify) process.stdout.write(`  ${model} ${size}x${size}: PyTorch computes Federa's outputs (largest difference ${out.verifiedMaxAbsDiff.toExponential(1)})\n`);
            verify = undefined;
            pytorch.push(out.imagesPerSec);
          }
        }
        const run = {
          model,
          input: size,
          threads,
          images: count,
          parameters,
          federaImagesPerSec: median(federa),
          pytorchImagesPerSec: torch.available ? median(pytorch) : null,
          // Each repeat's figure: their spread says how much the machine's other work moved the median.
          samples: { federa, ...(torch.available ? { pytorch } : {}) },
        };
        run.ratio = torch.available ? run.federaImagesPerSec / run.pytorchImagesPerSec : null;
        const { samples, ...ordered } = run;
        runs.push({ ...ordered, samples });
        process.stdout.write(
          `compare ${model} ${size}x${size} ${threads} thread(s): Federa ${rate(run.federaImagesPerSec)} img/s` +
            (torch.available ? `, PyTorch ${rate(run.pytorchImagesPerSec)} img/s, ratio ${run.ratio.toFixed(2)}` : '') +
            '\n',
        );
      }
    }
  }
  // Federa at each thread count per model and input, and the speedup of the most threads over one.
  const threadScaling = [];
  for (const model of models) {
    for (const size of inputSizes) {
      const own = runs.filter((r) => r.model === model && r.input === size).sort((a, b) => a.threads - b.threads);
      const one = own.find((r) => r.threads === 1);
      const most = own[own.length - 1];
      threadScaling.push({
        model,
        input: size,
        images: own[0].images,
        federaImagesPerSec: Object.fromEntries(own.map((r) => [String(r.threads), r.federaImagesPerSec])),
        speedup: one && most !== one ? most.federaImagesPerSec / one.federaImagesPerSec : null,
        ...(most !== one ? { speedupThreads: most.threads } : {}),
      });
    }
  }
  const comparison = torch.available
    ? { runs: runs.map(({ images: _n, parameters: _p, ...run }) => run), torch: torch.version, backend: 'wasm', imagesPerRun: Object.fromEntries(inputSizes.map((s) => [String(s), compareImages(s)])), repeats }
    : { skipped: args.compare ? `python3 -c 'import torch' failed: ${torch.reason}` : torch.reason };
  const seconds = Math.round((performance.now() - compareStarted) / 1000);
  process.stdout.write(`comparison and thread scaling took ${seconds} s\n`);
  return { comparison: torch.available ? { ...comparison, seconds } : comparison, threadScaling, runs, torchAvailable: torch.available };
}

/**
 * What PyTorch must reproduce for one model and size: Federa's softmax outputs on two images for weights that are
 * the initial ones plus noise (so that resnet's zero-initialised branches take part too).
 */
async function verification(spec, initial) {
  const prng = shared.createPrng(11);
  const weights = initial.map((w) => w + 0.05 * (2 * prng.nextFloat() - 1));
  const set = train.brightSquareImages(2, spec.inputSize, 3);
  const expected = await predictProbabilities(spec, weights, set);
  return { weights: Array.from(weights), images: Array.from(set.images), count: set.count, expected: Array.from(expected) };
}

const started = performance.now();
// Other work on the machine slows every figure; the load average says how much to trust a comparison.
const loadAtStart = loadavg();
const measured = [];
for (const backend of args.backends.split(',')) {
  try {
    await train.initBackend(backend);
  } catch (error) {
    process.stdout.write(`${backend}: not available here (${error.message.split('\n')[0]})\n`);
    continue;
  }
  // Classification architectures only: throughput trains them with trainLocal on per-image labels.
  for (const architecture of shared.CLASSIFICATION_ARCHITECTURES) {
    for (const size of sizes(backend === 'cpu' ? args['cpu-sizes'] : args.sizes)) {
      const run = await throughput(backend, architecture, size);
      measured.push(run);
      process.stdout.write(
        `${backend} ${architecture} ${size}x${size}: train ${rate(run.trainImagesPerSec)} img/s, inference ${rate(run.inferImagesPerSec)} img/s\n`,
      );
    }
  }
}
// `runs` keeps its original flat shape (one entry per backend, model and size); `architectures` groups the same
// figures by model, with the options and parameter count each was measured at.
const runs = measured.map(({ spec: _spec, ...run }) => run);
const architectures = shared.CLASSIFICATION_ARCHITECTURES.map((model) => {
  const own = measured.filter((run) => run.model === model);
  const { architecture: _a, inputSize: _i, channels: _c, classes: _k, seed: _s, ...options } = own[0]?.spec ?? {};
  return {
    model,
    options,
    parameters: own[0]?.parameters,
    throughput: own.map(({ backend, inputSize, images: count, trainImagesPerSec, inferImagesPerSec }) => ({
      backend,
      inputSize,
      images: count,
      trainImagesPerSec,
      inferImagesPerSec,
    })),
  };
});
await train.initBackend('wasm');
const round = await roundSplit();
const m = round.multiparty;
process.stdout.write(
  `one round (${round.images} images, ${round.epochs} epochs, ${round.backend}): data ${round.dataSeconds.toFixed(2)} s, ` +
    `training ${round.trainSeconds.toFixed(2)} s, encryption ${round.encryptSeconds.toFixed(3)} s (one shared key), upload ${round.uploadSeconds.toFixed(3)} s\n` +
    `  multiparty site work (${m.sites} sites): encrypt ${m.encryptSeconds.toFixed(3)} s, verifySum ${m.verifySumSeconds.toFixed(3)} s, ` +
    `key switch ${m.keySwitchSeconds.toFixed(3)} s, decrypt ${m.decryptSeconds.toFixed(3)} s: ${m.totalSeconds.toFixed(3)} s, ` +
    `${(100 * m.fractionOfTraining).toFixed(1)}% of the round's training\n`,
);
const compared = await compareWithPytorch();
await train.closeTrainingThreads();
const convCeiling = compared.torchAvailable ? convCeilingRows() : null;
await train.initBackend('wasm');
const dpCost = await dpCostRows({ train, shared, log: (line) => process.stdout.write(`${line}\n`) });
await train.closeTrainingThreads();
await mkdir(dirname(args.out), { recursive: true });
const conditions = {
  node: process.version,
  cpus: availableParallelism(),
  loadAverageAtStart: loadAtStart.map((l) => Number(l.toFixed(2))),
  loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))),
  seconds: Math.round((performance.now() - started) / 1000),
};
const { comparison, threadScaling } = compared;
await writeFile(args.out, `${JSON.stringify({ runs, architectures, round, conditions, comparison, threadScaling, convCeiling, dpCost }, null, 2)}\n`);
process.stdout.write(`\n${table(runs)}\n`);
process.stdout.write(`\n${comparisonTable(compared)}\n`);
{
  const cells = dpCost.map((r) => [r.model, `${r.input}x${r.input}`, String(r.threads), r.plainSeconds.toFixed(2), r.dpSeconds.toFixed(2), r.ratio.toFixed(2)]);
  process.stdout.write(`\none epoch of ${dpCost[0].images} images, without and with DP-SGD:\n${grid(['model', 'input', 'threads', 'plain s', 'DP-SGD s', 'ratio'], cells)}\n`);
}
if (convCeiling) {
  const cells = convCeiling.map((r) => [r.shape.join('x'), r.federaGflops.toFixed(1), r.pytorchGflops.toFixed(1), r.ratio.toFixed(2)]);
  process.stdout.write(`\none 3x3 convolution's training arithmetic, 1 thread (batch x size x in x out):\n${grid(['shape', 'Federa GFLOP/s', 'PyTorch GFLOP/s', 'ratio'], cells)}\n`);
}
process.stdout.write(`wrote ${args.out} in ${conditions.seconds} s (load average ${conditions.loadAverageAtStart[0]} at the start on ${conditions.cpus} cpus)\n`);

/** One convolution's training GFLOP/s on one thread, Federa's wasm against PyTorch (see bench/lib/conv-ceiling.mjs). */
function convCeilingRows() {
  const federa = federaConvRates();
  const pytorch = pytorchConvRates();
  return CEILING_SHAPES.map((shape, i) => ({ shape, federaGflops: federa[i], pytorchGflops: pytorch[i], ratio: federa[i] / pytorch[i] }));
}

/** Slow cpu rates need more digits than fast wasm ones. */
function rate(imagesPerSec) {
  return imagesPerSec.toFixed(imagesPerSec < 10 ? 2 : 1);
}

function comparisonTable({ runs: rows, torchAvailable: withTorch, comparison }) {
  const header = ['model', 'parameters', 'input', 'images', 'threads', 'Federa img/s'];
  if (withTorch) header.push(`PyTorch ${comparison.torch} img/s`, 'Federa / PyTorch');
  const cells = rows.map((r) => {
    const row = [r.model, String(r.parameters), `${r.input}x${r.input}`, String(r.images), String(r.threads), rate(r.federaImagesPerSec)];
    if (withTorch) row.push(rate(r.pytorchImagesPerSec), r.ratio.toFixed(2));
    return row;
  });
  const note = withTorch ? '' : `\n(${comparison.skipped})`;
  return `${grid(header, cells)}${note}`;
}

function grid(header, cells) {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => `| ${c.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

function table(rows) {
  const header = ['model', 'parameters', 'backend', 'input', 'train img/s', 'inference img/s'];
  const cells = rows.map((r) => [
    r.model,
    String(r.parameters),
    r.backend,
    `${r.inputSize}x${r.inputSize}`,
    rate(r.trainImagesPerSec),
    rate(r.inferImagesPerSec),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => `| ${c.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}
