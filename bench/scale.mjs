#!/usr/bin/env node
// Scale benchmark: a coordinator in its own process (from a provisioned kit, mutual TLS, embedded database unless
// --database-url) driven through one encrypted round by simulated sites (`federa-sim sites`: real gRPC, real CKKS,
// synthetic updates of the study's size), for each SITESxPARAMS run:
//   npm run bench -- scale [--runs 10x1M,50x1M,100x1M,5x25M] [--database-url URL] [--out bench/results/scale.json]
// Per run, in bench/results/scale.json:
//   roundSeconds            the round's opening to its closing (sites encrypt, upload; the coordinator adds, publishes)
//   coordinatorPeakRssMB    the coordinator process's peak resident memory (VmHWM), threads and database included
//   coordinatorStartupPeakRssMB  the same, measured after start-up and before any site connected
//   receiveSecondsPerSite   first data byte of the round's first update to the last byte of its last, over the sites:
//                           what receiving one site's bytes costs when they all arrive together
//   aggregateSecondsPerSite time spent checking and adding the updates into the encrypted sum, over the sites
// "1M" is a resnet of 1,004,678 parameters; "25M" the largest model the registry defines (resnet width 64,
// blocks 4-4-4-4: 23,701,506 parameters).
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

process.env.FEDERA_LOG_LEVEL ??= 'warn';
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const coordinatorPkg = await import(resolve(root, 'coordinator/dist/index.js'));
const shared = await import(resolve(root, 'shared/dist/index.js'));

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10x1M,50x1M,100x1M,5x25M' },
    'database-url': { type: 'string' },
    out: { type: 'string', default: resolve(here, 'results/scale.json') },
  },
});

const MODELS = {
  '1M': { architecture: 'resnet', inputSize: 32, channels: 1, classes: 2, seed: 1, width: 58, blocksPerStage: [1, 1, 1] },
  '25M': { architecture: 'resnet', inputSize: 32, channels: 1, classes: 2, seed: 1, width: 64, blocksPerStage: [4, 4, 4, 4] },
};
const runs = args.runs.split(',').map((spec) => {
  const match = /^(\d+)x(1M|25M)$/.exec(spec.trim());
  if (!match) throw new Error(`--runs: "${spec}" is not SITESxPARAMS (PARAMS 1M or 25M)`);
  return { sites: Number(match[1]), model: MODELS[match[2]], label: match[2] };
});

const node = process.execPath;
const federa = resolve(root, 'coordinator/dist/cli/federa.js');
const coordinatorMain = resolve(root, 'coordinator/dist/main.js');
const simMain = resolve(root, 'site-agent/dist/sim/main.js');

function run(command, argv, env = {}) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('exit', (code) => (code === 0 ? resolveRun(out) : reject(new Error(`${argv.join(' ')} exited ${code}: ${err.slice(-2000)}`))));
  });
}

async function waitFor(what, check, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function peakRssMb(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
  return Math.round(kb / 1024);
}

async function oneRun({ sites, model, label }) {
  const dir = await mkdtemp(join(tmpdir(), 'federa-scale-'));
  const children = [];
  try {
    const siteIds = Array.from({ length: sites }, (_, i) => `sim-${String(i + 1).padStart(3, '0')}`);
    const kits = join(dir, 'kits');
    await coordinatorPkg.provisionConsortium({
      config: { consortium: { name: 'scale benchmark' }, coordinator: { hostnames: ['localhost'], ips: ['127.0.0.1'] }, sites: siteIds.map((id) => ({ id })) },
      outDir: kits,
      generateCkksKeys: coordinatorPkg.generateConsortiumCkksKeys,
    });
    const dataDir = join(dir, 'coordinator');
    const db = args['database-url'] ? ['--database-url', `${args['database-url']}${args['database-url'].includes('?') ? '&' : '?'}schema=scale_${Date.now()}`] : [];
    const token = JSON.parse(await run(node, [federa, 'token', 'create', '--role', 'researcher', '--name', 'scale benchmark', '--data-dir', dataDir, '--json', ...db])).token;

    const ready = join(dir, 'ready.json');
    const coordinator = spawn(node, [coordinatorMain, '--kit', join(kits, 'coordinator'), '--data-dir', dataDir, '--grpc-port', '0', '--http-port', '0', '--ready-file', ready, ...db], {
      env: { ...process.env, FEDERA_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(coordinator);
    const received = [];
    let coordinatorErr = '';
    // The coordinator logs (pino, one JSON object a line) to stderr.
    createInterface({ input: coordinator.stderr }).on('line', (line) => {
      coordinatorErr = `${coordinatorErr}${line}\n`.slice(-4000);
      if (!line.includes('"update received"')) return;
      try {
        received.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    });
    const ports = await waitFor('the coordinator', async () => JSON.parse(await readFile(ready, 'utf8')), 120_000).catch((error) => {
      throw new Error(`${error.message}: ${coordinatorErr}`);
    });
    // Before any site: what starting the coordinator (and its database) alone takes.
    await new Promise((r) => setTimeout(r, 3000));
    const startupPeak = await peakRssMb(coordinator.pid);
    const api = async (method, path, body) => {
      const response = await fetch(`http://127.0.0.1:${ports.httpPort}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = await response.json();
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
      return json;
    };

    const processes = Math.max(1, Math.min(4, Math.ceil(sites / 25)));
    const sim = spawn(
      node,
      [simMain, 'sites', '--count', String(sites), '--kits', kits, '--coordinator', `127.0.0.1:${ports.grpcPort}`, '--server-name', 'localhost', '--processes', String(processes), '--json'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(sim);
    let simErr = '';
    sim.stderr.on('data', (c) => (simErr = (simErr + c).slice(-4000)));
    await waitFor(`${sites} simulated sites`, async () => (await api('GET', '/sites')).filter((s) => s.connected).length === sites, 300_000).catch((error) => {
      throw new Error(`${error.message}: ${simErr}`);
    });

    const study = await api('POST', '/studies', {
      name: `scale ${sites} sites x ${label}`,
      model,
      classNames: ['normal', 'lesion'],
      rounds: 1,
      minSites: sites,
      localEpochs: 1,
      batchSize: 8,
      learningRate: 0.01,
      aggregation: 'ckks',
      roundTimeoutSeconds: 3600,
    });
    await api('POST', `/studies/${study.id}/start`);
    const done = await waitFor(
      'the round to close',
      async () => {
        const view = await api('GET', `/studies/${study.id}`);
        if (view.status === 'failed') throw new Error(`the study failed: ${view.error}`);
        return view.status === 'completed' ? view : undefined;
      },
      3_600_000,
    );
    const round = done.rounds[0];
    const roundSeconds = (Date.parse(round.closedAt) - Date.parse(round.openedAt)) / 1000;
    const peak = await peakRssMb(coordinator.pid);
    const firstByte = Math.min(...received.map((r) => r.receiveStartedAt));
    const lastByte = Math.max(...received.map((r) => r.receiveEndedAt));
    const addSeconds = received.reduce((t, r) => t + r.addSeconds, 0);
    const result = {
      sites,
      params: shared.parameterCount(model),
      roundSeconds: round3(roundSeconds),
      coordinatorPeakRssMB: peak,
      coordinatorStartupPeakRssMB: startupPeak,
      receiveSecondsPerSite: round3((lastByte - firstByte) / 1000 / sites),
      aggregateSecondsPerSite: round3(addSeconds / sites),
      updateMB: round3(received[0].bytes / 1e6),
      updates: received.length,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return result;
  } finally {
    for (const child of children.reverse()) {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
    }
    await rm(dir, { recursive: true, force: true });
  }
}

function round3(x) {
  return Math.round(x * 1000) / 1000;
}

const results = [];
for (const r of runs) results.push(await oneRun(r));
const ten = results.find((r) => r.sites === 10 && r.params < 2e6);
const hundred = results.find((r) => r.sites === 100 && r.params < 2e6);
const summary = {
  runs: results,
  machine: { cores: availableParallelism(), node: process.version },
  database: args['database-url'] ? 'postgresql' : 'embedded (PGlite)',
  ...(ten && hundred ? { peakRss100over10: round3(hundred.coordinatorPeakRssMB / ten.coordinatorPeakRssMB) } : {}),
  aggregationKeepsUp: results.every((r) => r.aggregateSecondsPerSite <= r.receiveSecondsPerSite),
};
await mkdir(dirname(args.out), { recursive: true });
await writeFile(args.out, `${JSON.stringify(summary, null, 2)}\n`);
process.stdout.write(`wrote ${args.out}\n`);
