import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CkksContext,
  contributionTagKey,
  contributionVector,
  federation,
  tagProblems,
  tagVector,
  untagVector,
  studyDefinitionJson,
  segmentationCounts,
  studyHash,
  type StudyDefinition,
} from '@federa/shared';
import { sitePolicySchema, type SitePolicy } from '../config/index.js';
import {
  aggregateClaimRefusal,
  aggregateContentRefusal,
  approvalRefusal,
  cohortRefusal,
  shareEvaluation,
  shareSegmentationEvaluation,
  shareMetricsReport,
  studyRefusal,
  StudyDecisions,
} from './index.js';
import { testStudy } from './policy.testkit.js';

const policy: SitePolicy = sitePolicySchema.parse({});
const study = (overrides: Record<string, unknown> = {}): StudyDefinition => testStudy({ rounds: 5, ...overrides });


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
    // Padded with sites the study is not for.
    expect(cohortRefusal(['a', 'b', 'me'], 'me', policy, ['a', 'me', 'c'])?.message).toMatch(/names \[b\], which the study does not/);
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
    // An exact correct/n would give n away: rates leave rounded.
    expect(shareMetricsReport({ ...report, accuracy: 97 / 123, loss: 0.123456789 }, policy)).toMatchObject({ accuracy: 0.79, loss: 0.1235 });
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
    expect(figures?.figures?.accuracy).toBe(0.85);
    expect(figures?.figures?.sensitivity).toBe(0.9);
    // A class with fewer than minCountPerBin images: only accuracy leaves; fewer images in all: nothing.
    const small = { ...counts, confusion: [95, 2, 1, 2] };
    expect(Object.keys(shareEvaluation(small, base, policy)?.figures ?? {})).toEqual(['accuracy']);
    expect(shareEvaluation({ ...counts, confusion: [2, 0, 1, 1] }, base, policy)?.figures).toEqual({});
    const full = shareEvaluation(counts, base, { ...policy, shareMetrics: 'full', minCountPerBin: 5 });
    expect(full?.confusion).toEqual(counts.confusion);
    expect(full?.figures).toBeUndefined();
    expect(full?.positives.filter((v) => v > 0).every((v) => v >= 5)).toBe(true);
  });

  it('shares a segmentation evaluation as pixel counts with coarsened Dice histograms, as figures from enough images only, or not at all', () => {
    // 12 images of 2x2 pixels: the first 6 predicted exactly, the others with one lesion pixel missed.
    const masks = Array.from({ length: 12 }, () => [0, 0, 1, 1]).flat();
    const predicted = Array.from({ length: 12 }, (_, i) => (i < 6 ? [0, 0, 1, 1] : [0, 0, 1, 0])).flat();
    const counts = segmentationCounts(predicted.flatMap((l) => [1 - l, l]), masks, 2, 4);
    const base = { studyId: 's', round: 1, classNames: ['background', 'lesion'], backend: 'wasm', seconds: 1 };
    expect(shareSegmentationEvaluation(counts, base, { ...policy, shareMetrics: 'none' })).toBeNull();
    const full = shareSegmentationEvaluation(counts, base, { ...policy, shareMetrics: 'full', minCountPerBin: 5 })!;
    expect(full.confusion).toEqual([]);
    expect(full.segmentation).toMatchObject({ images: 12, truePositives: counts.tp, falsePositives: counts.fp, falseNegatives: counts.fn, diceBins: 10 });
    expect(full.segmentation?.diceHistogram.reduce((a, b) => a + b, 0)).toBe(12);
    expect(full.segmentation?.diceHistogram.filter((v) => v > 0).every((v) => v >= 5)).toBe(true);
    const aggregate = shareSegmentationEvaluation(counts, base, { ...policy, minCountPerBin: 10 })!;
    expect(aggregate.segmentation).toMatchObject({ images: 0, truePositives: [], diceHistogram: [] });
    // Lesion: tp 18, fn 6, fp 0: Dice 36 / 42, rounded to two decimals.
    expect(aggregate.segmentation?.figures).toEqual({ dice: 0.86, iou: 0.75, sensitivity: 0.75, precision: 1 });
    expect(shareSegmentationEvaluation(counts, base, { ...policy, minCountPerBin: 13 })?.segmentation?.figures).toEqual({});
  });
});

describe('checking a published aggregate before using it', () => {
  let ckks: CkksContext;
  let secretKey: Uint8Array;
  let tagKey: Uint8Array;
  const cohort = ['hospital-a', 'hospital-b', 'hospital-c'];
  const scope = { studyId: 'study-1', round: 2 };
  // Big enough for three ciphertexts, so a sum can be mixed chunk by chunk.
  const base = new Float32Array(5000).fill(0.5);
  const update = (site: string, round = scope.round): Uint8Array =>
    ckks.encryptVector(
      tagVector(contributionVector(base, base.map((w) => w + 0.01), 10, cohort, site), ckks.valuesPerCiphertext, tagKey, { ...scope, round }, site),
      secretKey,
    );
  const sum = (...payloads: Uint8Array[]): Uint8Array => {
    const accumulator = ckks.createAccumulator(ckks.publicParamsFor(secretKey));
    for (const payload of payloads) accumulator.add(payload);
    return accumulator.result();
  };
  /** The site's verdict on an aggregate said to sum `contributors`: what GlobalModels checks, in order. */
  const check = (aggregate: Uint8Array, contributors: string[]) => {
    const ref = { cohort, contributors, round: scope.round };
    const claim = aggregateClaimRefusal(ref, policy);
    if (claim) return claim;
    const tagged = ckks.decryptVector(aggregate, secretKey);
    const slots = untagVector(tagged, base.length + 1 + cohort.length, ckks.valuesPerCiphertext).subarray(base.length + 1);
    return aggregateContentRefusal(tagProblems(tagged, ckks.valuesPerCiphertext, tagKey, scope, contributors), slots, ref);
  };

  beforeAll(async () => {
    ckks = await CkksContext.create();
    secretKey = ckks.generateKeys().secretKey;
    tagKey = contributionTagKey(secretKey);
  });
  afterAll(() => ckks.dispose());

  it('accepts a sum of enough distinct sites, exactly those the coordinator names', () => {
    expect(check(sum(update('hospital-a'), update('hospital-b'), update('hospital-c')), cohort)).toBeNull();
  });

  it('refuses, without decrypting, an aggregate said to hold too few sites or sites outside the cohort', () => {
    expect(check(sum(update('hospital-a')), ['hospital-a'])?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS);
    expect(check(sum(update('hospital-a')), ['hospital-a', 'hospital-a', 'hospital-b'])?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH);
    expect(check(sum(update('hospital-a')), ['hospital-a', 'hospital-b', 'hospital-x'])?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH);
  });

  it('refuses one hospital\'s update passed off as three, even with its slots shifted to look like three', () => {
    expect(check(sum(update('hospital-a')), cohort)?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH);
    // Without a key the coordinator can still add a plaintext to a ciphertext: here it makes the slots read 1, 1, 1.
    const forged = ckks.decryptVector(sum(update('hospital-a')), secretKey);
    const slotAt = (i: number) => Math.floor(i / (ckks.valuesPerCiphertext - 2)) * ckks.valuesPerCiphertext + (i % (ckks.valuesPerCiphertext - 2));
    forged[slotAt(base.length + 2)] = 1;
    forged[slotAt(base.length + 3)] = 1;
    const shifted = ckks.encryptVector(forged, secretKey);
    const refusal = check(shifted, cohort);
    expect(refusal?.reason).toBe(federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH);
    expect(refusal?.message).toMatch(/ciphertext 0 is not the sum of \[hospital-a, hospital-b, hospital-c\]/);
  });

  it('refuses a hospital counted several times, and an honest sum mixed with one site\'s ciphertexts', () => {
    expect(check(sum(update('hospital-a'), update('hospital-a'), update('hospital-a')), cohort)?.reason).toBe(
      federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH,
    );
    // Tags name the round too: last round's updates are no contributions to this one.
    expect(check(sum(update('hospital-a', 1), update('hospital-b', 1), update('hospital-c', 1)), cohort)?.reason).toBe(
      federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH,
    );
    // The first ciphertexts of hospital a's update alone, the last (with the slots) of the honest sum.
    const honest = ckks.decryptVector(sum(update('hospital-a'), update('hospital-b'), update('hospital-c')), secretKey);
    const alone = ckks.decryptVector(sum(update('hospital-a')), secretKey);
    const mixed = Float64Array.from(honest);
    mixed.set(alone.subarray(0, 2 * ckks.valuesPerCiphertext));
    const refusal = check(ckks.encryptVector(mixed, secretKey), cohort);
    expect(refusal?.message).toMatch(/ciphertext 0 is not the sum/);
    expect(refusal?.message).not.toMatch(/ciphertext 2 /);
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
    expect((await decisions.decisionFor('s1', hash))?.decision).toBe('rejected');
    // The same definition offered again as another study needs its own decision.
    await decisions.remember({ hash, studyId: 's2', name: def.name, owner: 'dr who', definitionJson: studyDefinitionJson(def) });
    expect(await decisions.decisionFor('s2', hash)).toBeNull();
    await expect(decisions.decide(hash, 'approved', 'it')).rejects.toThrow(/2 studies share this definition .* --study/);
    expect((await decisions.decide(hash, 'approved', 'it', undefined, 's2')).decision).toMatchObject({ studyId: 's2', decision: 'approved' });
    // Once the coordinator's list says s1 ended and s2 runs, the hash alone names s2, the one that can still run.
    await decisions.remember({ hash, studyId: 's1', name: def.name, owner: 'dr who', definitionJson: studyDefinitionJson(def), status: 'completed' });
    await decisions.remember({ hash, studyId: 's2', name: def.name, owner: 'dr who', definitionJson: studyDefinitionJson(def), status: 'running' });
    expect((await decisions.decide(hash, 'rejected', 'it')).decision).toMatchObject({ studyId: 's2', decision: 'rejected' });
    // Two runs still open: the hash is ambiguous again.
    await decisions.remember({ hash, studyId: 's3', name: def.name, owner: 'dr who', definitionJson: studyDefinitionJson(def), status: 'draft' });
    await expect(decisions.decide(hash, 'approved', 'it')).rejects.toThrow(/3 studies share this definition .* --study/);
    const lines = (await readFile(decisions.decisionsPath, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(4);
    expect((await stat(decisions.decisionsPath)).mode & 0o077).toBe(0);
    const known = (await decisions.known()).find((s) => s.studyId === 's1');
    expect(known?.owner).toBe('dr who');
    expect(known?.definition).toEqual(def);
  });
});
