import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CkksContext,
  contributionVector,
  federation,
  studyDefinitionJson,
  studyDefinitionSchema,
  studyHash,
  type StudyDefinition,
} from '@federa/shared';
import { sitePolicySchema, type SitePolicy } from '../config/index.js';
import { aggregateRefusal, approvalRefusal, cohortRefusal, shareEvaluation, shareMetricsReport, studyRefusal, StudyDecisions } from './index.js';

const policy: SitePolicy = sitePolicySchema.parse({});
const study = (overrides: Record<string, unknown> = {}): StudyDefinition =>
  studyDefinitionSchema.parse({
    name: 'lesion',
    model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 1 },
    classNames: ['normal', 'lesion'],
    rounds: 5,
    minSites: 3,
    localEpochs: 1,
    batchSize: 4,
    learningRate: 0.01,
    ...overrides,
  });

describe('the site policy', () => {
  it('refuses plaintext studies, too many rounds and studies that may aggregate fewer sites than it needs', () => {
    expect(studyRefusal(study(), policy)).toBeNull();
    expect(studyRefusal(study({ aggregation: 'plaintext' }), policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED);
    expect(studyRefusal(study({ aggregation: 'plaintext' }), { ...policy, requireEncryption: false })).toBeNull();
    expect(studyRefusal(study({ rounds: 101 }), policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_TOO_MANY_ROUNDS);
    const one = studyRefusal(study({ minSites: 1 }), policy);
    expect(one?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_COHORT_TOO_SMALL);
    expect(one?.message).toMatch(/as few as 1 sites .* at least 3/);
  });

  it('needs this site in a big enough cohort of distinct sites', () => {
    expect(cohortRefusal(['a', 'b', 'me'], 'me', policy)).toBeNull();
    expect(cohortRefusal(['a', 'b', 'c'], 'me', policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_NOT_IN_COHORT);
    expect(cohortRefusal(['a', 'me'], 'me', policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_COHORT_TOO_SMALL);
    expect(cohortRefusal(['me', 'me', 'a'], 'me', policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_NOT_IN_COHORT);
  });

  it('runs only what the hospital approved, unless autoApprove (demos and tests) is on', () => {
    const at = new Date().toISOString();
    const hash = 'ab'.repeat(32);
    expect(approvalRefusal(hash, null, policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_NOT_APPROVED);
    expect(approvalRefusal(hash, { hash, decision: 'approved', at, by: 'it' }, policy)).toBeNull();
    expect(approvalRefusal(hash, { hash, decision: 'rejected', at, by: 'it' }, policy)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_REJECTED);
    expect(approvalRefusal(hash, null, { ...policy, autoApprove: true })).toBeNull();
    // A rejection stands even under autoApprove.
    expect(approvalRefusal(hash, { hash, decision: 'rejected', at, by: 'it' }, { ...policy, autoApprove: true })).not.toBeNull();
  });

  it('lets out what shareMetrics says: nothing, rates without counts, or counts', () => {
    const report: federation.MetricsReport = {
      studyId: 's',
      round: 1,
      kind: federation.MetricKind.METRIC_KIND_TRAIN,
      loss: 0.4,
      accuracy: 0.8,
      samples: 123,
      seconds: 1,
      backend: 'wasm',
    };
    expect(shareMetricsReport(report, { ...policy, shareMetrics: 'none' })).toBeNull();
    expect(shareMetricsReport(report, policy)).not.toHaveProperty('samples');
    expect(shareMetricsReport(report, { ...policy, shareMetrics: 'full' })?.samples).toBe(123);

    const bins = 64;
    const counts = { classes: 2, bins, confusion: [40, 10, 5, 45], positives: new Array<number>(2 * bins).fill(0), negatives: new Array<number>(2 * bins).fill(0) };
    for (let i = 0; i < 50; i++) {
      counts.positives[i % bins]! += 1; // class 0
      counts.negatives[bins + (i % bins)]! += 1;
      counts.positives[bins + ((i * 7) % bins)]! += 1; // class 1
      counts.negatives[(i * 7) % bins]! += 1;
    }
    const base = { studyId: 's', round: 1, classNames: ['normal', 'lesion'], backend: 'wasm', seconds: 1 };
    expect(shareEvaluation(counts, base, { ...policy, shareMetrics: 'none' })).toBeNull();
    const figures = shareEvaluation(counts, base, policy);
    expect(figures?.confusion).toEqual([]);
    expect(figures?.positives).toEqual([]);
    expect(figures?.figures?.accuracy).toBeCloseTo(0.85, 10);
    const full = shareEvaluation(counts, base, { ...policy, shareMetrics: 'full', minCountPerBin: 5 });
    expect(full?.confusion).toEqual(counts.confusion);
    expect(full?.figures).toBeUndefined();
    expect(full?.positives.filter((v) => v > 0).every((v) => v >= 5)).toBe(true);
  });
});

describe('checking a published aggregate before using it', () => {
  let ckks: CkksContext;
  let secretKey: Uint8Array;
  const cohort = ['hospital-a', 'hospital-b', 'hospital-c'];
  const base = new Float32Array(100).fill(0.5);
  const update = (site: string): Uint8Array => ckks.encryptVector(contributionVector(base, base.map((w) => w + 0.01), 10, cohort, site), secretKey);
  const sum = (...payloads: Uint8Array[]): Uint8Array => {
    const accumulator = ckks.createAccumulator(ckks.publicParamsFor(secretKey));
    for (const payload of payloads) accumulator.add(payload);
    return accumulator.result();
  };
  const check = (aggregate: Uint8Array, contributors: string[]) =>
    aggregateRefusal(ckks.decryptTail(aggregate, secretKey, cohort.length), { cohort, contributors, round: 1 }, policy);

  beforeAll(async () => {
    ckks = await CkksContext.create();
    secretKey = ckks.generateKeys().secretKey;
  });
  afterAll(() => ckks.dispose());

  it('accepts a sum of enough distinct sites, exactly those the coordinator names', () => {
    expect(check(sum(update('hospital-a'), update('hospital-b'), update('hospital-c')), cohort)).toBeNull();
  });

  it('refuses one hospital\'s update passed off as an aggregate', () => {
    const refusal = check(sum(update('hospital-a')), ['hospital-a']);
    expect(refusal?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS);
    // Claiming three contributors does not make it three.
    expect(check(sum(update('hospital-a')), cohort)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH);
  });

  it('refuses one hospital counted several times (its updates from other rounds replayed as contributions)', () => {
    // The accumulator already refuses the same ciphertext twice; separate encryptions of one site's vector are
    // what a coordinator holding old updates could add instead.
    const refusal = check(sum(update('hospital-a'), update('hospital-a'), update('hospital-a')), cohort);
    expect(refusal?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH);
    expect(refusal?.message).toMatch(/hospital-a's slot holds 3\.000/);
  });
});

describe('the hospital\'s study decisions', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-decisions-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('remembers offered definitions by verified hash and records decisions append-only, owner-only', async () => {
    const decisions = new StudyDecisions(dir);
    const def = study();
    const hash = studyHash(def);
    await expect(decisions.remember({ hash: 'ab'.repeat(32), studyId: 's1', name: def.name, owner: 'r', definitionJson: studyDefinitionJson(def) })).rejects.toThrow(
      /hashes to/,
    );
    await decisions.remember({ hash, studyId: 's1', name: def.name, owner: 'dr who', definitionJson: studyDefinitionJson(def) });
    await expect(decisions.decide('0123456789', 'approved', 'it')).rejects.toThrow(/no study with hash/);
    await expect(decisions.decide('xyz', 'approved', 'it')).rejects.toThrow(/not a study hash/);
    const approved = await decisions.decide(hash.slice(0, 10), 'approved', 'it@host', 'reviewed by the IRB');
    expect(approved.decision).toMatchObject({ hash, decision: 'approved', by: 'it@host', note: 'reviewed by the IRB' });
    await decisions.decide(hash, 'rejected', 'ciso@host');
    expect((await decisions.decisionFor(hash))?.decision).toBe('rejected');
    const lines = (await readFile(decisions.decisionsPath, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(2);
    expect((await stat(decisions.decisionsPath)).mode & 0o077).toBe(0);
    const [known] = await decisions.known();
    expect(known?.owner).toBe('dr who');
    expect(known?.definition).toEqual(def);
  });
});
