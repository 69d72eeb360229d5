#!/usr/bin/env node
// Local training benchmark: training and inference images per second for each registered model at 64x64 and
// 128x128 on every TensorFlow.js backend that loads here, and one round's time split into data (decode and
// preprocess), training, encryption and upload (to a coordinator on loopback, over mutual TLS).
//   npm run bench -- train [--images 128] [--backends wasm,cpu] [--out bench/results/train.json]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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
    backends: { type: 'string', default: 'wasm,cpu' },
    out: { type: 'string', default: resolve(here, 'results/train.json') },
  },
});
const images = Number(args.images);

function synthetic(count, size) {
  return train.brightSquareImages(count, size, 7);
}

async function throughput(backend, architecture, size) {
  // The plain cpu backend is about 100x slower: fewer images keep the run short, the rate stays comparable.
  const count = backend === 'cpu' ? Math.max(8, Math.round(images / 16)) : images;
  const spec = { architecture, inputSize: size, channels: 1, classes: 2, seed: 1 };
  const set = synthetic(count, size);
  const weights = shared.initialWeights(spec);
  await train.trainLocal(spec, weights, synthetic(8, size), { epochs: 1, batchSize: 8, learningRate: 0.001, seed: 1, optimizer: 'adam' });
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
      };
    } finally {
      await coordinator.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const runs = [];
for (const backend of args.backends.split(',')) {
  try {
    await train.initBackend(backend);
  } catch (error) {
    process.stdout.write(`${backend}: not available here (${error.message.split('\n')[0]})\n`);
    continue;
  }
  for (const architecture of shared.ARCHITECTURE_NAMES) {
    for (const size of [64, 128]) {
      const run = await throughput(backend, architecture, size);
      runs.push(run);
      process.stdout.write(
        `${backend} ${architecture} ${size}x${size}: train ${run.trainImagesPerSec.toFixed(1)} img/s, inference ${run.inferImagesPerSec.toFixed(1)} img/s\n`,
      );
    }
  }
}
await train.initBackend('wasm');
const round = await roundSplit();
process.stdout.write(
  `one round (${round.images} images, ${round.epochs} epochs, ${round.backend}): data ${round.dataSeconds.toFixed(2)} s, ` +
    `training ${round.trainSeconds.toFixed(2)} s, encryption ${round.encryptSeconds.toFixed(3)} s, upload ${round.uploadSeconds.toFixed(3)} s\n`,
);
await mkdir(dirname(args.out), { recursive: true });
await writeFile(args.out, `${JSON.stringify({ runs, round }, null, 2)}\n`);
process.stdout.write(`wrote ${args.out}\n`);
