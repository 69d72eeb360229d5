import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyAggregate,
  baseStateSha256,
  CkksContext,
  contributionTagKey,
  contributionVector,
  federation,
  float32ToBytes,
  initialWeights,
  sha256Hex,
  tagVector,
  untagVector,
  type StudyDefinition,
} from '@federa/shared';
import { CoordinatorRetry, type FederationClient } from '../client/index.js';
import { sitePolicySchema } from '../config/index.js';
import { testStudy } from '../policy/policy.testkit.js';
import { GlobalModels, type KeyHolder } from './global-models.js';
import { ModelCache } from './model-cache.js';

/**
 * Two sites that decrypt the same aggregates of a study with a server optimizer must hold bit-identical weights and
 * optimizer state, whether they stepped round by round, replayed missed rounds, or restarted in between: the hash
 * of both is what each names as its update's base, and the coordinator refuses an update whose base differs.
 */
const cohort = ['hospital-a', 'hospital-b', 'hospital-c'];
const studyId = 'study-1';
const adam = { kind: 'fedadam', learningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 };

describe('global models with a server optimizer at the sites', () => {
  let ckks: CkksContext;
  let keys: KeyHolder;
  let dir: string;
  let study: StudyDefinition;
  /** Round r's published artifact, by round: the initial weights, then encrypted sums. */
  const artifacts = new Map<number, { header: federation.ModelRef; bytes: Uint8Array }>();
  let downloads = 0;
  const client = {
    downloadArtifact: async (_study: string, round: number) => {
      downloads++;
      const artifact = artifacts.get(round);
      if (!artifact) throw new Error(`no artifact for round ${round}`);
      return artifact;
    },
    downloadModel: async (ref: federation.ModelRef) => (await client.downloadArtifact(ref.studyId, ref.round)).bytes,
  };
  const site = (name: string, def: StudyDefinition = study) => {
    const cache = new ModelCache(join(dir, name));
    const models = new GlobalModels(client as unknown as FederationClient, cache, async () => keys, sitePolicySchema.parse({}), new CoordinatorRetry());
    return { cache, models, def };
  };
  const ref = (round: number, kind: federation.ModelKind, bytes: Uint8Array): federation.ModelRef => ({
    studyId,
    round,
    kind,
    sha256: sha256Hex(bytes),
    sizeBytes: bytes.byteLength,
    parameterCount: 0,
    cohort: round === 0 ? [] : cohort,
    contributors: round === 0 ? [] : cohort,
    keyEpoch: 0,
  });
  /** Every cohort site trains from `base` (each its own made-up change) and the coordinator sums the ciphertexts. */
  const publishRound = (round: number, base: Float32Array): void => {
    const accumulator = ckks.createAccumulator(ckks.publicParamsFor(keys.secretKey));
    cohort.forEach((siteId, s) => {
      const trained = base.map((w, i) => w + 0.002 * Math.sin(i * (s + 1) + round) + 0.001 * (s - 1));
      const vector = contributionVector(base, trained, 10 + 5 * s, cohort, siteId);
      accumulator.add(ckks.encryptVector(tagVector(vector, ckks.valuesPerCiphertext, keys.tagKey, { studyId, round }, siteId), keys.secretKey));
    });
    const bytes = accumulator.result();
    artifacts.set(round, { header: ref(round, federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE, bytes), bytes });
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-global-models-'));
    ckks = await CkksContext.create();
    const secretKey = ckks.generateKeys().secretKey;
    keys = { context: ckks, secretKey, tagKey: contributionTagKey(secretKey) };
    study = testStudy({ aggregation: 'ckks', serverOptimizer: adam });
    const initial = float32ToBytes(initialWeights(study.model));
    artifacts.set(0, { header: ref(0, federation.ModelKind.MODEL_KIND_WEIGHTS, initial), bytes: initial });
    // Round 2's updates start from round 1's model as the sites compute it (any site: they agree, as tested below).
    publishRound(1, initialWeights(study.model));
    publishRound(2, await site('publisher').models.weights(studyId, 1, study));
  });
  afterAll(async () => {
    ckks.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('gives two sites bit-identical weights and base state hash, one stepping round by round, one replaying both rounds', async () => {
    const a = site('a');
    const b = site('b');
    const a1 = await a.models.trainingBase(studyId, 1, study, artifacts.get(1)!.header);
    const a2 = await a.models.trainingBase(studyId, 2, study, artifacts.get(2)!.header);
    // Site b missed round 1: asked for round 2, it replays round 1 from its aggregate first.
    const b2 = await b.models.trainingBase(studyId, 2, study, artifacts.get(2)!.header);
    expect(sha256Hex(float32ToBytes(b2.weights))).toBe(sha256Hex(float32ToBytes(a2.weights)));
    expect(b2.baseStateSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b2.baseStateSha256).toBe(a2.baseStateSha256);
    expect(a1.baseStateSha256).not.toBe(a2.baseStateSha256);
    // The hash covers the optimizer state, not only the weights; round 0's base names none (the seed fixes it).
    expect(a2.baseStateSha256).not.toBe(baseStateSha256({ weights: a2.weights }));
    expect((await a.models.trainingBase(studyId, 0, study, artifacts.get(0)!.header)).baseStateSha256).toBe('');
    // Each site keeps the same state bytes on disk, beside the same weights.
    for (const round of [1, 2]) {
      expect(await readFile(b.cache.statePath(studyId, round))).toEqual(await readFile(a.cache.statePath(studyId, round)));
      expect(await readFile(b.cache.path(studyId, round))).toEqual(await readFile(a.cache.path(studyId, round)));
    }
  });

  it('steps with the optimizer, not plain FedAvg, and plain FedAvg names the weights\' own hash', async () => {
    const fedadam = await site('a').models.model(studyId, 1, study);
    const plainStudy = testStudy({ aggregation: 'ckks' });
    const plain = await site('plain', plainStudy).models.trainingBase(studyId, 1, plainStudy, artifacts.get(1)!.header);
    const sum = untagVector(ckks.decryptVector(artifacts.get(1)!.bytes, keys.secretKey), plain.weights.length + 1 + cohort.length, ckks.valuesPerCiphertext);
    expect(plain.weights).toEqual(applyAggregate(initialWeights(study.model), sum, cohort.length));
    expect(plain.baseStateSha256).toBe(sha256Hex(float32ToBytes(plain.weights)));
    expect(fedadam.weights).not.toEqual(plain.weights);
    expect(fedadam.server?.rounds).toBe(1);
  });

  it('reads weights and state back after a restart, and recomputes a deleted state to the same bits', async () => {
    const before = await site('a').models.trainingBase(studyId, 2, study, artifacts.get(2)!.header);
    const counted = downloads;
    const restarted = site('a');
    expect((await restarted.models.trainingBase(studyId, 2, study, artifacts.get(2)!.header)).baseStateSha256).toBe(before.baseStateSha256);
    expect(downloads).toBe(counted);
    await rm(restarted.cache.statePath(studyId, 2));
    expect((await site('a').models.trainingBase(studyId, 2, study, artifacts.get(2)!.header)).baseStateSha256).toBe(before.baseStateSha256);
    expect(downloads).toBe(counted + 1);
  });

  it('refuses a damaged state file, naming it, and a server optimizer over plaintext aggregation', async () => {
    const damaged = site('a');
    const path = damaged.cache.statePath(studyId, 1);
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.byteLength - 8));
    await expect(damaged.models.model(studyId, 1, study)).rejects.toThrow(/server optimizer state .*1\.server-state is \d+ bytes, expected \d+ \(truncated or padded\)/);
    await writeFile(path, bytes);
    // A study definition refuses this combination; the site refuses it too, for a definition from elsewhere.
    const plaintext = { ...testStudy({ aggregation: 'plaintext' }), serverOptimizer: study.serverOptimizer };
    await expect(site('c', plaintext).models.model(studyId, 0, plaintext)).rejects.toThrow(/aggregates in the clear.*needs aggregation ckks or multiparty/);
  });
});
