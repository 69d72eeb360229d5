#!/usr/bin/env node
// Homomorphic-encryption benchmark: bytes on the wire, throughput and accuracy of the CKKS codec for
// 100k, 1M and 10M-parameter models summed over a few sites. Run after `npx tsc -b shared`:
//   node bench/he.mjs [--sites 3] [--sizes 100000,1000000,10000000] [--out bench/results/he.json]
// Writes bench/results/he.json and prints one line per size. Times are medians over the repetitions;
// encrypt and decrypt (and every multiparty operation) are timed on all cores (CkksWorkerPool) and on one thread.
import { createHash } from 'node:crypto';
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

context.dispose();

// Multiparty mode (shared/src/ckks/multiparty): keys no single party holds, the protocol's own pure-TypeScript
// arithmetic on the blobs as they travel. Each operation runs on the worker pool's threads (the *Threaded functions,
// as the site agent and the coordinator call them) and on one thread; the two must agree byte for byte, so the same
// seeds go into both. Bytes per parameter are the wire forms' sizes (c0 and the share rounded, c1 and sums as residues).
const mp = await import(resolve(here, '../shared/dist/ckks/multiparty/index.js'));
const mpParams = mp.deriveMultipartyParameters();
const ring = mp.ringOf(mpParams);
const randomSeed = () => globalThis.crypto.getRandomValues(new Uint8Array(32));
const a = mp.commonPolynomial(ring, new Uint8Array(32).fill(1), { studyId: '00000000-0000-4000-8000-000000000000', epoch: 1 });
const keyShares = Array.from({ length: sites }, () => mp.keyShare(ring, a, new mp.SeededStream(randomSeed(), 'key')));
const collective = { p: mp.collectivePublicKey(ring, keyShares.map((k) => k.publicShare)), a };
const modelKey = mp.sampleTernary(ring, new mp.SeededStream(randomSeed(), 'model-key'));
// Every vector of a benchmark is large enough for the threads: no minimum.
const threading = pool ? { threads, pool: () => Promise.resolve(pool), minCiphertexts: 1 } : undefined;
const mpSizes = sizes.filter((n) => n <= Number(process.env.FEDERA_BENCH_MULTIPARTY_MAX ?? 10_000_000));

/** Runs `op` on the threads and on one thread; returns the result and both times, after checking they agree. */
async function both(name, op) {
  const pooled = await timed(() => op(threading));
  const single = await timed(() => op(undefined));
  const bytes = (r) => (r instanceof Float64Array ? new Uint8Array(r.buffer) : r);
  const same = [pooled.result].flat().every((r, i) => Buffer.from(bytes(r)).equals(Buffer.from(bytes([single.result].flat()[i]))));
  if (!same) throw new Error(`multiparty ${name}: the threads' result differs from one thread's`);
  return { result: single.result, seconds: pooled.seconds, oneThread: single.seconds };
}

/** Every operation of a round, on the threads and on one thread: the times, and the decrypted sum. */
async function multipartyRound(vectors) {
  const header = { epoch: 1, valueCount: vectors[0].length };
  const encryptSeeds = vectors.map(() => randomSeed());
  const encrypt = await both('encrypt', (t) =>
    Promise.all(vectors.map((v, i) => mp.encryptUpdateThreaded(ring, mpParams, collective, header.epoch, v, new mp.SeededStream(encryptSeeds[i], 'enc'), t))),
  );
  const updates = encrypt.result;
  const sum = await both('sum', async (t) => {
    const s = await mp.sumUpdatesThreaded(ring, mpParams, header, updates, t);
    return [s.c0, s.c1];
  });
  const [c0, c1] = sum.result;
  const shareSeeds = keyShares.map(() => randomSeed());
  const share = await both('key-switching share', (t) =>
    Promise.all(keyShares.map((k, i) => mp.shareForSumThreaded(ring, mpParams, k.secret, i === 0 ? modelKey : null, c1, new mp.SeededStream(shareSeeds[i], 'switch'), t))),
  );
  const shares = share.result;
  const switched = await both('switch', (t) => mp.switchedModelThreaded(ring, mpParams, header, c0, c1, shares, t));
  const decrypt = await both('decrypt', (t) => mp.decryptModelThreaded(ring, mpParams, switched.result, modelKey, { epoch: header.epoch }, t));
  // A member's verifySum (the default policy): the c1 part of every summed update, each hashed (against the c1Sha256
  // its site signed) and added, and the built sum hashed against the one the task names, as
  // site-agent/src/multiparty/sum-verification.ts does (one thread; the parts are cut here, at the coordinator, untimed).
  const parts = updates.map((u) => mp.updateC1Part(ring, mpParams, u, header));
  const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
  const signed = parts.map(sha256);
  const verifyStart = performance.now();
  const check = new mp.C1PartSum(ring, mpParams, header);
  for (const [i, part] of parts.entries()) {
    if (sha256(part) !== signed[i]) throw new Error('multiparty verifySum: a c1 part is not the one signed');
    check.add(part);
  }
  if (sha256(check.encode()) !== sha256(c1)) throw new Error('multiparty verifySum: the c1 parts do not add up to the sum');
  const verify = { seconds: (performance.now() - verifyStart) / 1000, partBytes: parts.reduce((n, p) => n + p.byteLength, 0) };
  // The coordinator's part: summing the updates and switching the sum with the shares.
  const aggregate = { seconds: sum.seconds + switched.seconds, oneThread: sum.oneThread + switched.oneThread };
  return { encrypt, aggregate, share, decrypt, verify, sumValues: decrypt.result };
}

// Untimed: the threads and this one build the ring's tables and compile every operation once.
if (mpSizes.length > 0) await multipartyRound(Array.from({ length: sites }, (_, k) => siteVector(4 * ring.n, weights[k % weights.length], 1000 + k)));

for (const params of mpSizes) {
  const vectors = Array.from({ length: sites }, (_, k) => siteVector(params, weights[k % weights.length], 1000 + k));
  const plainSum = new Float64Array(params + 1);
  for (const v of vectors) for (let i = 0; i <= params; i++) plainSum[i] += v[i];
  const rounds = [];
  for (let rep = 0; rep < repetitionsFor(params); rep++) rounds.push(await multipartyRound(vectors));
  // Medians over the repetitions, on the threads and on one thread.
  const medians = (op) => ({ seconds: median(rounds.map((r) => r[op].seconds)), oneThread: median(rounds.map((r) => r[op].oneThread)) });
  const [encrypt, aggregate, share, decrypt] = ['encrypt', 'aggregate', 'share', 'decrypt'].map(medians);
  const { sumValues, verify } = rounds[0];
  const verifySeconds = median(rounds.map((r) => r.verify.seconds));
  // What one site sends (its update and its share) and downloads (the published model, and the sum it switches: the
  // summed c1 when it trusts the coordinator, every summed update's c1 part when it checks the sum, verifySum), as
  // the blobs that travel, headers included.
  const header = { epoch: 1, valueCount: params + 1 };
  const blob = (kind) => mp.payloadBytes(ring, mpParams, kind, header.valueCount);
  const uploadBytes = blob('update') + blob('share');
  const modelBytes = blob('model');
  const downloadBytes = modelBytes + blob('sum-c1');
  const downloadVerifyingBytes = modelBytes + sites * blob('update-c1');
  if (verify.partBytes !== sites * blob('update-c1')) throw new Error('multiparty: the c1 parts are not the size payloadBytes says');
  let maxAbsError = 0;
  for (let i = 0; i < params; i++) maxAbsError = Math.max(maxAbsError, Math.abs(sumValues[i] / sumValues[params] - plainSum[i] / plainSum[params]));
  runs.push({
    mode: 'multiparty',
    params,
    sites,
    uploadBytesPerParam: uploadBytes / params,
    downloadBytesPerParam: downloadVerifyingBytes / params,
    downloadBytesPerParamTrustingSum: downloadBytes / params,
    modelBytesPerParam: modelBytes / params,
    verifySumParamsPerSec: (params * sites) / verifySeconds,
    encryptParamsPerSec: (params * sites) / encrypt.seconds,
    aggregateParamsPerSec: (params * sites) / aggregate.seconds,
    keySwitchParamsPerSec: (params * sites) / share.seconds,
    decryptParamsPerSec: params / decrypt.seconds,
    maxAbsError,
    threads: pool ? threads : 1,
    encryptParamsPerSecOneThread: (params * sites) / encrypt.oneThread,
    aggregateParamsPerSecOneThread: (params * sites) / aggregate.oneThread,
    keySwitchParamsPerSecOneThread: (params * sites) / share.oneThread,
    decryptParamsPerSecOneThread: params / decrypt.oneThread,
    repetitions: repetitionsFor(params),
  });
  const r = runs.at(-1);
  const rate = (x, x1) => `${(x / 1e6).toFixed(3)} M/s (1 thread ${(x1 / 1e6).toFixed(3)})`;
  console.error(
    `${String(params).padStart(9)} params x ${sites} sites, multiparty: upload ${r.uploadBytesPerParam.toFixed(3)} B/param (update and share), ` +
      `download ${r.downloadBytesPerParam.toFixed(3)} B/param (${r.downloadBytesPerParamTrustingSum.toFixed(3)} without verifySum), ` +
      `verifySum ${(r.verifySumParamsPerSec / 1e6).toFixed(3)} M/s, encrypt ${rate(r.encryptParamsPerSec, r.encryptParamsPerSecOneThread)}, ` +
      `aggregate ${rate(r.aggregateParamsPerSec, r.aggregateParamsPerSecOneThread)}, key switch ${rate(r.keySwitchParamsPerSec, r.keySwitchParamsPerSecOneThread)}, ` +
      `decrypt ${rate(r.decryptParamsPerSec, r.decryptParamsPerSecOneThread)}, ${r.threads} threads, max FedAvg error ${r.maxAbsError.toExponential(2)}`,
  );
}
await pool?.close();

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
