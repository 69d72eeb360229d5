#!/usr/bin/env node
// Local training benchmark: training and inference images per second for each registered architecture (at its
// default options) at 64x64 and 128x128 on wasm and at 64x64 on the plain cpu backend (whose convolution gradients
// are two orders of magnitude slower), and one round's time split into data (decode and preprocess), training,
// encryption and upload (to a coordinator on loopback, over mutual TLS), with the site's multiparty work beside it.
//   npm run bench -- train [--images 128] [--cpu-images 4] [--backends wasm,cpu] [--sizes 64,128] [--cpu-sizes 64]
//                          [--out bench/results/train.json]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
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
const client = await load('site-agent/dist/client/index.js');
const coordinatorPkg = await load('coordinator/dist/index.js');

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '128' },
    'cpu-images': { type: 'string', default: '4' },
    backends: { type: 'string', default: 'wasm,cpu' },
    sizes: { type: 'string', default: '64,128' },
    'cpu-sizes': { type: 'string', default: '64' },
    out: { type: 'string', default: resolve(here, 'results/train.json') },
  },
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
  for (const architecture of shared.ARCHITECTURE_NAMES) {
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
const architectures = shared.ARCHITECTURE_NAMES.map((model) => {
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
await mkdir(dirname(args.out), { recursive: true });
const conditions = {
  node: process.version,
  cpus: availableParallelism(),
  loadAverageAtStart: loadAtStart.map((l) => Number(l.toFixed(2))),
  loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))),
  seconds: Math.round((performance.now() - started) / 1000),
};
await writeFile(args.out, `${JSON.stringify({ runs, architectures, round, conditions }, null, 2)}\n`);
process.stdout.write(`\n${table(runs)}\n`);
process.stdout.write(`wrote ${args.out} in ${conditions.seconds} s (load average ${conditions.loadAverageAtStart[0]} at the start on ${conditions.cpus} cpus)\n`);

/** Slow cpu rates need more digits than fast wasm ones. */
function rate(imagesPerSec) {
  return imagesPerSec.toFixed(imagesPerSec < 10 ? 2 : 1);
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
