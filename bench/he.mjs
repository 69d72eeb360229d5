#!/usr/bin/env node
// Homomorphic-encryption benchmark: bytes on the wire, throughput and accuracy of the CKKS codec for
// 100k, 1M and 10M-parameter models summed over a few sites. Run after `npx tsc -b shared`:
//   node bench/he.mjs [--sites 3] [--sizes 100000,1000000,10000000] [--out bench/results/he.json]
// Writes bench/results/he.json and prints one line per size. Times are medians over the repetitions;
// encrypt and decrypt are timed on all cores (CkksWorkerPool) and on one thread.
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { zstdCompressSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const ckks = await import(resolve(here, '../shared/dist/ckks/index.js')).catch((error) => {
  console.error(`cannot load shared/dist/ckks (run \`npx tsc -b shared\` first): ${error.message}`);
  process.exit(1);
});
const { CkksContext, CkksWorkerPool, DEFAULT_CKKS_PARAMETERS, fedAvgErrorBound, sealHeapBytes } = ckks;

const { values: args } = parseArgs({
  options: {
    sites: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '100000,1000000,10000000' },
    threads: { type: 'string', default: String(availableParallelism()) },
    out: { type: 'string', default: resolve(here, 'results/he.json') },
  },
});
const sites = Number(args.sites);
const sizes = args.sizes.split(',').map(Number);
const threads = Number(args.threads);
// Fewer repetitions for big models keep the whole run within a few minutes on two cores.
const repetitionsFor = (params) => (params <= 100_000 ? 5 : params <= 1_000_000 ? 3 : 1);

/** mulberry32: reproducible vectors without Math.random. */
function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A site's update vector: (trained - base) * w with |update| in 1e-4..1e-1, random signs, then w. */
function siteVector(params, weight, seed) {
  const next = prng(seed);
  const v = new Float32Array(params + 1);
  for (let i = 0; i < params; i++) v[i] = (next() < 0.5 ? -1 : 1) * 1e-4 * 1000 ** next() * weight;
  v[params] = weight;
  return v;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

async function timed(fn) {
  const start = process.hrtime.bigint();
  const result = await fn();
  return { result, seconds: Number(process.hrtime.bigint() - start) / 1e9 };
}

const context = await CkksContext.create();
const { secretKey, publicParams } = context.generateKeys();
const pool = threads > 1 && CkksWorkerPool !== undefined ? await CkksWorkerPool.create({ threads }) : undefined;
const weights = [120, 3_400, 10_000, 57, 800, 2_500, 9_000, 10, 4_000, 600];
const runs = [];

for (const params of sizes) {
  const vectors = Array.from({ length: sites }, (_, k) => siteVector(params, weights[k % weights.length], 1000 + k));
  const plainSum = new Float64Array(params + 1);
  for (const v of vectors) for (let i = 0; i <= params; i++) plainSum[i] += v[i];
  const times = { encrypt: [], encrypt1: [], aggregate: [], decrypt: [], decrypt1: [] };
  let payloads = [];
  let aggregate;
  let sum;
  for (let rep = 0; rep < repetitionsFor(params); rep++) {
    // Site side on all cores (the pool) and on one thread, for comparison.
    if (pool) {
      const encrypt = await timed(async () => {
        const out = [];
        for (const v of vectors) out.push(await pool.encryptVector(v, secretKey));
        return out;
      });
      times.encrypt.push(encrypt.seconds);
    }
    const encrypt1 = await timed(() => vectors.map((v) => context.encryptVector(v, secretKey)));
    payloads = encrypt1.result;
    times.encrypt1.push(encrypt1.seconds);
    const add = await timed(() => {
      const acc = context.createAccumulator(publicParams);
      for (const p of payloads) acc.add(p);
      return acc.result();
    });
    aggregate = add.result;
    times.aggregate.push(add.seconds);
    if (pool) {
      const decrypt = await timed(() => pool.decryptVector(aggregate, secretKey));
      times.decrypt.push(decrypt.seconds);
    }
    const decrypt1 = await timed(() => context.decryptVector(aggregate, secretKey));
    sum = decrypt1.result;
    times.decrypt1.push(decrypt1.seconds);
  }
  if (!pool) {
    times.encrypt = times.encrypt1;
    times.decrypt = times.decrypt1;
  }
  let maxAbsError = 0;
  const w = sum[params];
  const plainW = plainSum[params];
  for (let i = 0; i < params; i++) maxAbsError = Math.max(maxAbsError, Math.abs(sum[i] / w - plainSum[i] / plainW));
  const zstdBytes = zstdCompressSync(payloads[0]).length;
  runs.push({
    mode: 'single-key',
    params,
    sites,
    uploadBytesPerParam: payloads[0].length / params,
    downloadBytesPerParam: aggregate.length / params,
    encryptParamsPerSec: (params * sites) / median(times.encrypt),
    aggregateParamsPerSec: (params * sites) / median(times.aggregate),
    decryptParamsPerSec: params / median(times.decrypt),
    maxAbsError,
    errorBound: fedAvgErrorBound(context.parameters, { sites, totalWeight: plainW, maxAbsUpdate: 0.1 }),
    uploadZstdBytesPerParam: zstdBytes / params,
    threads: pool ? threads : 1,
    encryptParamsPerSecOneThread: (params * sites) / median(times.encrypt1),
    decryptParamsPerSecOneThread: params / median(times.decrypt1),
    repetitions: repetitionsFor(params),
  });
  const r = runs.at(-1);
  console.error(
    `${String(params).padStart(9)} params x ${sites} sites: upload ${r.uploadBytesPerParam.toFixed(3)} B/param ` +
      `(zstd ${r.uploadZstdBytesPerParam.toFixed(3)}), download ${r.downloadBytesPerParam.toFixed(3)} B/param, ` +
      `encrypt ${(r.encryptParamsPerSec / 1e6).toFixed(2)} M/s (1 thread ${(r.encryptParamsPerSecOneThread / 1e6).toFixed(2)}), ` +
      `aggregate ${(r.aggregateParamsPerSec / 1e6).toFixed(2)} M/s, decrypt ${(r.decryptParamsPerSec / 1e6).toFixed(2)} M/s ` +
      `(1 thread ${(r.decryptParamsPerSecOneThread / 1e6).toFixed(2)}), max error ${r.maxAbsError.toExponential(2)} ` +
      `(bound ${r.errorBound.toExponential(2)}), SEAL heap ${((sealHeapBytes() ?? 0) / 2 ** 20).toFixed(0)} MiB`,
  );
}

await pool?.close();
context.dispose();

// Multiparty mode (shared/src/ckks/multiparty): keys no single party holds. One thread, the protocol's own
// pure-TypeScript arithmetic; bytes are the wire forms' real sizes (c0 and the share rounded, c1 and sums as residues).
const mp = await import(resolve(here, '../shared/dist/ckks/multiparty/index.js'));
const mpParams = mp.deriveMultipartyParameters();
const ring = mp.ringOf(mpParams);
const randomStream = (label) => new mp.SeededStream(globalThis.crypto.getRandomValues(new Uint8Array(32)), label);
const a = mp.commonPolynomial(ring, new Uint8Array(32).fill(1), { studyId: '00000000-0000-4000-8000-000000000000', epoch: 1 });
const keyShares = Array.from({ length: sites }, () => mp.keyShare(ring, a, randomStream('key')));
const collective = mp.collectivePublicKey(ring, keyShares.map((k) => k.publicShare));
const modelKey = mp.sampleTernary(ring, randomStream('model-key'));
const mpSizes = sizes.filter((n) => n <= Number(process.env.FEDERA_BENCH_MULTIPARTY_MAX ?? 10_000_000));
for (const params of mpSizes) {
  const vectors = Array.from({ length: sites }, (_, k) => siteVector(params, weights[k % weights.length], 1000 + k));
  const plainSum = new Float64Array(params + 1);
  for (const v of vectors) for (let i = 0; i <= params; i++) plainSum[i] += v[i];
  const n = ring.n;
  const count = Math.ceil((params + 1) / n);
  const chunk = (v, c) => v.subarray(c * n, Math.min((c + 1) * n, params + 1));
  const bytes = { c1: mp.residueBytes(ring) };
  const t = { encrypt: 0, aggregate: 0, share: 0, decrypt: 0 };
  const sumValues = new Float64Array(params + 1);
  let uploadBytes = 0;
  let downloadBytes = 0;
  for (let c = 0; c < count; c++) {
    let started = performance.now();
    const cts = vectors.map((v) => mp.encrypt(ring, mpParams, { p: collective, a }, chunk(v, c), randomStream('enc')));
    // What one site sends: its ciphertext packed as it travels (c0 and the share only for the values used).
    const used = chunk(plainSum, c).length;
    const out = new Uint8Array(mp.roundedBytes(ring, mpParams.droppedBits.c0, used) + bytes.c1);
    mp.packResidues(ring, cts[0].c1, out, mp.packRounded(ring, cts[0].c0, mpParams.droppedBits.c0, out, 0, used));
    t.encrypt += performance.now() - started;
    started = performance.now();
    const sum = mp.addCiphertexts(ring, cts);
    t.aggregate += performance.now() - started;
    started = performance.now();
    const shares = keyShares.map((k, i) => mp.keySwitchShare(ring, mpParams, k.secret, i === 0 ? modelKey : null, sum.c1, randomStream('switch')));
    const shareOut = new Uint8Array(mp.roundedBytes(ring, mpParams.droppedBits.share, used));
    mp.packRounded(ring, shares[0], mpParams.droppedBits.share, shareOut, 0, used);
    t.share += performance.now() - started;
    started = performance.now();
    const switched = mp.applyKeySwitch(ring, sum, shares);
    t.aggregate += performance.now() - started;
    started = performance.now();
    const values = mp.decrypt(ring, mpParams, switched, modelKey, chunk(plainSum, c).length);
    t.decrypt += performance.now() - started;
    sumValues.set(values, c * n);
    uploadBytes += out.length + shareOut.length;
    downloadBytes += bytes.c1 + mp.roundedBytes(ring, mpParams.droppedBits.c0, used);
  }
  let maxAbsError = 0;
  for (let i = 0; i < params; i++) maxAbsError = Math.max(maxAbsError, Math.abs(sumValues[i] / sumValues[params] - plainSum[i] / plainSum[params]));
  const s = (ms) => ms / 1000;
  runs.push({
    mode: 'multiparty',
    params,
    sites,
    uploadBytesPerParam: uploadBytes / params,
    downloadBytesPerParam: downloadBytes / params,
    encryptParamsPerSec: (params * sites) / s(t.encrypt),
    aggregateParamsPerSec: (params * sites) / s(t.aggregate),
    keySwitchParamsPerSec: (params * sites) / s(t.share),
    decryptParamsPerSec: params / s(t.decrypt),
    maxAbsError,
    threads: 1,
    repetitions: 1,
  });
  const r = runs.at(-1);
  console.error(
    `${String(params).padStart(9)} params x ${sites} sites, multiparty: upload ${r.uploadBytesPerParam.toFixed(3)} B/param (update and share), ` +
      `download ${r.downloadBytesPerParam.toFixed(3)} B/param, encrypt ${(r.encryptParamsPerSec / 1e6).toFixed(3)} M/s, ` +
      `aggregate ${(r.aggregateParamsPerSec / 1e6).toFixed(2)} M/s, key switch ${(r.keySwitchParamsPerSec / 1e6).toFixed(3)} M/s, ` +
      `decrypt ${(r.decryptParamsPerSec / 1e6).toFixed(3)} M/s (one thread), max FedAvg error ${r.maxAbsError.toExponential(2)}`,
  );
}

const p = DEFAULT_CKKS_PARAMETERS;
const results = {
  runs,
  multiparty: { ...mpParams, primes: ring.primes },
  ckks: {
    ...p,
    encoding: 'coefficient (N values per ciphertext, one per polynomial coefficient)',
    encryption: 'symmetric, seeded (c1 regenerated from a 64-byte seed), c0 bit-packed without its low droppedBits bits',
    securityLevel: 128,
    modulus: context.modulus.value.toString(),
    modulusBits: context.modulus.bits,
    uploadBitsPerValue: context.uploadBits,
    downloadBitsPerValue: 2 * context.modulus.bits,
    worstCaseFedAvgErrorOneSiteWeightOne: fedAvgErrorBound(p, { sites: 1, totalWeight: 1 }),
    fingerprint: context.fingerprint,
    node: process.version,
    cpus: availableParallelism(),
  },
};
await mkdir(dirname(args.out), { recursive: true });
await writeFile(args.out, `${JSON.stringify(results, null, 2)}\n`);
console.error(`wrote ${args.out}`);
