import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesToFloat32, mergeEvaluationCounts, metricsFromCounts, sha256Hex } from '@federa/shared';
import { openDatabase } from '@federa/coordinator';
import { LocalConsortium, type StudyStatusView } from '../demo/src/consortium.js';
import { isolatedSchema, postgresReachable } from './postgres.js';

const ROUNDS = 2;
const withPostgres = await postgresReachable();

describe.each([
  { database: 'pglite' as const },
  ...(withPostgres ? [{ database: 'postgresql' as const }] : []),
])('a 2-site, 2-round consortium over gRPC ($database)', ({ database }) => {
  let workDir: string;
  let consortium: LocalConsortium;
  let study: StudyStatusView;
  let evaluation: Awaited<ReturnType<LocalConsortium['evaluation']>>;
  let schema: Awaited<ReturnType<typeof isolatedSchema>> | undefined;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-e2e-'));
    schema = database === 'postgresql' ? await isolatedSchema('federa_e2e') : undefined;
    consortium = await LocalConsortium.start({
      workDir,
      sites: 2,
      imagesPerSite: 40,
      holdoutImages: 10,
      seed: 11,
      // The single-key mode needs its shared key in the kits.
      sharedKey: true,
      ...(schema ? { databaseUrl: schema.url } : {}),
      // Counts leave the sites, so the evaluation can be checked against them; the default shares figures only.
      policy: { shareMetrics: 'full' },
    });
    const created = await consortium.createStudy({
      name: 'e2e',
      model: { architecture: 'small-cnn', inputSize: 32, channels: 1, classes: 2, seed: 5 },
      classNames: ['normal', 'lesion'],
      rounds: ROUNDS,
      minSites: 2,
      // The single-key mode end to end (multiparty has its own: multiparty.e2e.test.ts).
      aggregation: 'ckks',
      // 32 training images per site in batches of 8: 5 steps is one epoch and a batch of the next.
      localSteps: 5,
      batchSize: 8,
      learningRate: 0.01,
    });
    // Both hospitals approve the study by its hash, as their IT would, before it starts.
    await consortium.approve(created.specHash);
    await consortium.startStudy(created.id);
    study = await consortium.follow(created.id, () => undefined, 240_000);
    // The study completes without waiting for evaluations; the final round's may still be on its way.
    for (let round = 1; round <= ROUNDS; round++) await consortium.settledEvaluation(created.id, round, 60_000);
    evaluation = await consortium.evaluation(created.id);
  }, 300_000);

  afterAll(async () => {
    await consortium?.stop();
    await schema?.drop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('publishes, each round, the sample-weighted average of exactly the updates the sites sent', async () => {
    expect(study.status).toBe('completed');
    // The coordinator only ever published encrypted sums.
    expect(study.initialModel?.kind).toBe('weights');
    expect(study.rounds.map((r) => r.model?.kind)).toEqual(['encrypted_aggregate', 'encrypted_aggregate']);
    for (let round = 1; round <= ROUNDS; round++) {
      const base = await consortium.globalWeights(study.id, round - 1);
      const published = await consortium.globalWeights(study.id, round);
      const sum = new Float64Array(base.length + 1);
      for (const site of consortium.sites) {
        const dir = join(site.stateDir, 'rounds', study.id, String(round));
        const sent = await readFile(join(dir, 'update.bin'));
        const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { status: string; receipt: { sha256: string } };
        // What the site kept is what the coordinator acknowledged receiving, and it is not the clear vector.
        expect(state.status).toBe('uploaded');
        expect(state.receipt.sha256).toBe(sha256Hex(sent));
        expect(sent.subarray(0, 4).toString('latin1')).toBe('FDCK');
        const vector = bytesToFloat32(await readFile(join(dir, 'update.plain.f32')));
        // Parameters, the weight, and one contribution slot per cohort site.
        expect(vector.length).toBe(base.length + 1 + consortium.sites.length);
        for (let i = 0; i <= base.length; i++) sum[i] = (sum[i] as number) + (vector[i] as number);
      }
      const totalWeight = sum[base.length] as number;
      expect(totalWeight).toBeGreaterThan(0);
      let maxError = 0;
      let moved = 0;
      for (let i = 0; i < base.length; i++) {
        const expected = (base[i] as number) + (sum[i] as number) / totalWeight;
        maxError = Math.max(maxError, Math.abs(expected - (published[i] as number)));
        moved = Math.max(moved, Math.abs((published[i] as number) - (base[i] as number)));
      }
      expect(maxError).toBeLessThan(1e-6);
      // Training really changed the model (a no-op round would pass the average check trivially).
      expect(moved).toBeGreaterThan(1e-4);
    }
    // Every site decrypted the same final model for its hospital.
    for (const site of consortium.sites) {
      const own = bytesToFloat32(await readFile(join(site.stateDir, 'models', study.id, `${ROUNDS}.f32`)));
      expect(Array.from(own)).toEqual(Array.from(await consortium.globalWeights(study.id, ROUNDS)));
    }
  });

  it('reports each round with both sites and their metrics', () => {
    expect(study.rounds.map((r) => [r.number, r.status, r.participants])).toEqual([
      [1, 'closed', 2],
      [2, 'closed', 2],
    ]);
    for (const round of study.rounds) {
      expect(round.reportedSites).toEqual(consortium.sites.map((s) => s.id).sort());
      expect(round.metrics.filter((m) => m.kind === 'train')).toHaveLength(2);
    }
  });

  it('has every site evaluate every round\'s global model on its held-out data, and merges the counts', async () => {
    const siteIds = consortium.sites.map((s) => s.id).sort();
    expect(evaluation.rounds.map((r) => r.number)).toEqual([1, 2]);
    for (const round of evaluation.rounds) {
      expect(round.requestedSites).toEqual(siteIds);
      expect(round.pendingSites).toEqual([]);
      expect(round.sites.map((s) => s.siteId)).toEqual(siteIds);
      for (const site of round.sites) {
        const dir = join(consortium.sites.find((s) => s.id === site.siteId)!.stateDir, 'rounds', study.id, String(round.number));
        const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { validationSamples: number };
        // The whole held-out split, and only it.
        expect(state.validationSamples).toBeGreaterThan(0);
        expect(site.samples).toBe(state.validationSamples);
        expect(site.counts?.bins).toBe(1024);
      }
      const merged = metricsFromCounts(mergeEvaluationCounts(round.sites.map((s) => s.counts!)));
      expect(round.overall).toMatchObject({ ...merged, sites: 2 });
      expect(round.overall?.samples).toBe(round.sites.reduce((n, s) => n + s.samples, 0));
      // A trained model on this easy task scores at least something, and every figure is defined for two classes.
      expect(round.overall?.auc).not.toBeNull();
      expect(round.overall?.balancedAccuracy).not.toBeNull();
    }
    // The study view carries the same figures per round.
    expect(study.rounds.length).toBe(ROUNDS);
    expect((await consortium.study(study.id)).rounds.map((r) => r.evaluation?.overall)).toEqual(evaluation.rounds.map((r) => r.overall));
  });

  it('shows what data each site loaded, as counts only, matching what it trained and validated on', async () => {
    const views = await consortium.siteViews();
    for (const site of consortium.sites) {
      const dataset = views.find((v) => v.id === site.id)?.dataset;
      const state = JSON.parse(await readFile(join(site.stateDir, 'rounds', study.id, '1', 'state.json'), 'utf8')) as {
        samples: number;
        validationSamples: number;
      };
      expect(dataset?.studyId).toBe(study.id);
      expect(dataset?.accepted).toBe(state.samples + state.validationSamples);
      expect(Object.keys(dataset?.byClass ?? {}).sort()).toEqual(['lesion', 'normal']);
      expect(dataset?.byModality).toBeDefined();
      const wire = JSON.stringify(dataset);
      expect(wire).not.toMatch(/\.dcm|\/|\\/);
    }
  });

  it('keeps the rounds, models and receipts as rows in the database', async () => {
    await consortium.stop();
    const db = await openDatabase({ dataDir: join(workDir, 'coordinator'), ...(schema ? { databaseUrl: schema.url } : {}) });
    try {
      expect(db.kind).toBe(database);
      const rounds = await db.prisma.round.findMany({ where: { studyId: study.id }, orderBy: { number: 'asc' } });
      expect(rounds.map((r) => r.status)).toEqual(['closed', 'closed']);
      const models = await db.prisma.modelVersion.findMany({ where: { studyId: study.id }, orderBy: { round: 'asc' } });
      expect(models.map((m) => m.round)).toEqual([0, 1, 2]);
      expect(models.map((m) => m.sha256)).toEqual([
        study.initialModel?.sha256,
        ...study.rounds.map((r) => r.model?.sha256),
      ]);
      expect(await db.prisma.updateReceipt.count({ where: { round: { studyId: study.id } } })).toBe(4);
      expect(await db.prisma.roundEvaluation.count({ where: { round: { studyId: study.id }, reportedAt: { not: null } } })).toBe(4);
      const persisted = await db.prisma.study.findUniqueOrThrow({ where: { id: study.id } });
      expect(persisted.status).toBe('completed');
    } finally {
      await db.close();
    }
  });
});
