import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { parseLedgerText, type FeatureStatisticsView, type StudyDefinitionInput } from '@federa/shared';
import { runApprovedStudy, useLocalConsortium } from './support/local-consortium.js';

interface SegmentationFigures {
  dice: number | null;
  iou: number | null;
  sensitivity: number | null;
  precision: number | null;
}
interface SegmentationView extends SegmentationFigures {
  perClass: Array<SegmentationFigures & { className: string }> | null;
  diceHistogram: { bins: number; counts: number[][] } | null;
}
interface EvaluationRound {
  number: number;
  pendingSites: string[];
  sites: Array<{ siteId: string; shared: string; samples: number | null; accuracy: number | null; segmentation?: SegmentationView }>;
  overall: { sites: number; method: string; samples: number | null; segmentation?: SegmentationView } | null;
}

interface StatisticsView {
  round: number;
  sha256: string;
  features: FeatureStatisticsView[];
  mismatchedSites: string[];
}

const segmentationStudy: StudyDefinitionInput = {
  name: 'lesion segmentation e2e',
  model: { architecture: 'unet', inputSize: 32, channels: 1, classes: 2, seed: 5, width: 4, depth: 2 },
  classNames: ['background', 'lesion'],
  rounds: 2,
  minSites: 3,
  localSteps: 3,
  batchSize: 4,
  learningRate: 0.003,
  roundTimeoutSeconds: 120,
};

const statisticsStudy: StudyDefinitionInput = {
  name: 'dataset overview and z-scored training',
  model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 4 },
  classNames: ['normal', 'lesion'],
  rounds: 2,
  minSites: 3,
  localSteps: 2,
  batchSize: 4,
  learningRate: 0.01,
  roundTimeoutSeconds: 120,
  statistics: { intensity: { bins: 16 }, features: [{ name: 'firstorder_mean', min: 0, max: 1 }, { name: 'edges_density', min: 0, max: 1 }], featureBins: 10, zScore: true, harmonise: true },
};

/** Two short rounds of a linear model, as both linear studies below train it. */
const linearTraining = { classNames: ['normal', 'lesion'], rounds: 2, minSites: 3, localSteps: 3, batchSize: 4, learningRate: 0.05, roundTimeoutSeconds: 120 };

const scaledLinearStudy: StudyDefinitionInput = {
  name: 'logistic regression on consortium-standardised features',
  model: { architecture: 'logistic-regression', inputSize: 16, channels: 1, classes: 2, seed: 6, features: ['first-order', 'edges'] },
  ...linearTraining,
  statistics: { modelFeatures: true, featureBins: 8 },
};

const regionLinearStudy: StudyDefinitionInput = {
  name: 'logistic regression on the texture inside the body outline',
  model: { architecture: 'logistic-regression', inputSize: 32, channels: 1, classes: 2, seed: 7, features: ['first-order', 'glcm'], region: 'mask', maskSegment: 'Body' },
  ...linearTraining,
};

/**
 * Beyond classification, end to end with three real site agents (one consortium for both studies):
 * - segmentation: the sites read the simulator's DICOM images with their DICOM SEG lesion masks, train a U-Net through
 *   the encrypted (multiparty) sum and report pixel counts of the global model on their held-out images; the
 *   coordinator pools them into Dice, IoU, sensitivity and precision per site and overall;
 * - federated statistics: the sites encode their images' intensity and feature statistics, the coordinator sums them
 *   under the multiparty key without being able to read any, the sites decrypt only the consortium's totals and report
 *   them (each the same), and round 2 trains on images harmonised and z-scored with the consortium's moments.
 */
describe('segmentation and federated statistics with real site agents', () => {
  const local = useLocalConsortium('federa-beyond-', { sites: 3, imagesPerSite: 12, holdoutImages: 0, seed: 9, policy: { shareMetrics: 'full', minCountPerBin: 1 } });

  it('trains a U-Net on DICOM SEG masks and pools the sites\' pixel counts into Dice per site and overall', async () => {
    const consortium = local.get();
    const study = await runApprovedStudy(consortium, segmentationStudy, 170_000);
    const created = study;
    expect(study.error).toBeNull();
    expect(study.status).toBe('completed');
    expect(study.rounds.map((r) => r.status)).toEqual(['closed', 'closed']);

    // Both rounds' global models are evaluated by both sites; wait for the last reports.
    let rounds: EvaluationRound[] = [];
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      rounds = (await consortium.request<{ rounds: EvaluationRound[] }>('GET', `/studies/${created.id}/evaluation`)).rounds;
      if (rounds.length === 2 && rounds.every((r) => r.pendingSites.length === 0 && r.sites.length === consortium.sites.length)) break;
    }
    expect(rounds.map((r) => r.number)).toEqual([1, 2]);
    for (const round of rounds) {
      for (const site of round.sites) {
        expect(site.shared).toBe('counts');
        expect(site.accuracy).toBeNull();
        expect(site.samples).toBeGreaterThan(0);
        const seg = site.segmentation!;
        expect(seg.perClass?.map((c) => c.className)).toEqual(['lesion']);
        // Every held-out image is in the lesion's Dice histogram once.
        expect(seg.diceHistogram?.counts[0]?.reduce((a, b) => a + b, 0)).toBe(site.samples);
      }
      const overall = round.overall!;
      expect(overall.method).toBe('pooled-counts');
      expect(overall.samples).toBe(round.sites.reduce((n, s) => n + (s.samples ?? 0), 0));
      for (const key of ['dice', 'iou', 'sensitivity', 'precision'] as const) {
        const value = overall.segmentation?.[key];
        if (value !== null) expect(value).toBeGreaterThanOrEqual(0);
        if (value !== null) expect(value).toBeLessThanOrEqual(1);
      }
      // Dice and IoU of the same pooled counts: D = 2J / (1 + J).
      const { dice, iou } = overall.segmentation!;
      if (dice !== null && iou !== null) expect(dice).toBeCloseTo((2 * iou) / (1 + iou), 10);
    }

    // Each site described its data by segment: each image under the segment its mask holds, background without one.
    const sites = await consortium.request<Array<{ id: string; dataset: { studyId: string; accepted: number; byClass: Record<string, number> } | null }>>('GET', '/sites');
    for (const site of sites) {
      expect(site.dataset, JSON.stringify(sites)).not.toBeNull();
      expect(site.dataset?.studyId).toBe(created.id);
      expect((site.dataset?.byClass.background ?? 0) + (site.dataset?.byClass.lesion ?? 0)).toBe(site.dataset?.accepted);
      expect(site.dataset?.byClass.lesion).toBeGreaterThan(0);
      expect(site.dataset?.byClass.background).toBeGreaterThan(0);
    }
  }, 240_000);

  it('decrypts only the consortium totals, which every site reports alike, then trains on harmonised, z-scored images', async () => {
    const consortium = local.get();
    const study = await runApprovedStudy(consortium, statisticsStudy, 170_000);
    const created = study;
    expect(study.error).toBeNull();
    expect(study.status).toBe('completed');
    expect(study.rounds.map((r) => r.status)).toEqual(['closed', 'closed']);

    const stats = await reportedStatistics(created.id);
    expect(stats).not.toBeNull();
    expect(stats!.round).toBe(1);
    expect(stats!.mismatchedSites).toEqual([]);
    expect(stats!.features.map((f) => f.feature)).toEqual(['intensity', 'firstorder_mean', 'edges_density']);
    const sites = await consortium.request<Array<{ dataset: { studyId: string; accepted: number } | null }>>('GET', '/sites');
    const images = sites.reduce((n, s) => n + (s.dataset?.studyId === created.id ? s.dataset.accepted : 0), 0);
    const [intensity, mean] = stats!.features;
    expect(intensity).toMatchObject({ units: images, count: images * 16 * 16 });
    expect(intensity!.histogram.counts.reduce((a, b) => a + b, 0)).toBe(images * 16 * 16);
    expect(intensity!.mean).toBeGreaterThan(0);
    expect(intensity!.std).toBeGreaterThan(0);
    // The mean of the images' means is the mean of their pixels: every image has the same number.
    expect(mean!.mean).toBeCloseTo(intensity!.mean!, 6);
    expect(mean!.units).toBe(images);

    // Each site's ledger holds its encrypted statistics update and the totals it reported, nothing else of round 1.
    for (const site of consortium.sites) {
      const { entries } = parseLedgerText(await readFile(join(site.stateDir, 'ledger', 'ledger.jsonl'), 'utf8'));
      const own = entries.filter((e) => e.studyId === created.id && e.round === 1);
      expect(own.filter((e) => e.kind === 'update')).toHaveLength(1);
      expect(own.filter((e) => e.kind === 'metrics')).toHaveLength(0);
      expect(own.filter((e) => e.kind === 'statistics').map((e) => e.detail?.sha256)).toEqual([stats!.sha256]);
    }
  }, 240_000);

  it('computes a linear model\'s feature moments in round 1 and trains and evaluates it standardised with them', async () => {
    const consortium = local.get();
    const study = await runApprovedStudy(consortium, scaledLinearStudy, 170_000);
    expect(study.error).toBeNull();
    expect(study.status).toBe('completed');
    expect(study.rounds.map((r) => r.status)).toEqual(['closed', 'closed']);
    const stats = await reportedStatistics(study.id);
    expect(stats!.mismatchedSites).toEqual([]);
    // 19 first-order and 6 edge features, each over every image of every site.
    expect(stats!.features.map((f) => f.feature)).toEqual(Array.from({ length: 25 }, (_, i) => `model_feature_${i}`));
    const units = stats!.features[0]!.units;
    expect(units).toBeGreaterThanOrEqual(3 * 10);
    for (const f of stats!.features) expect(f.units).toBe(units);
    // The fixed scale puts the mean intensity (feature 1) inside [-1, 1], with some spread over the images.
    expect(Math.abs(stats!.features[1]!.mean!)).toBeLessThan(1);
    expect(stats!.features[1]!.std).toBeGreaterThan(0);
    // Round 2 trained and every site evaluated its model. That both used the standardize built from these totals is
    // StatisticsWork.trainingSpec's, checked in site-agent/src/agent/statistics-round.test.ts; here the whole path runs.
    const round2 = await settledRound(study.id, 2);
    expect(round2?.sites.map((s) => s.shared)).toEqual(['counts', 'counts', 'counts']);
    expect(round2?.overall?.samples).toBeGreaterThan(0);
  }, 240_000);

  it('trains a classifier on features from inside a structure each image\'s mask outlines, and rejects images without one', async () => {
    const consortium = local.get();
    // Written now, not with the consortium: a segmentation study over these folders would see them as masks too.
    // Every image but the first of each site gets a PNG mask beside it outlining a "body" disc.
    for (const site of consortium.data.sites) {
      for (const [i, member] of site.members.entries()) {
        if (i === 0) continue;
        const header = dicomParser.parseDicom(await readFile(join(site.dir, member.file)));
        const [rows, columns] = [header.uint16('x00280010') ?? 0, header.uint16('x00280011') ?? 0];
        const disc = Buffer.from(Array.from({ length: rows * columns }, (_, p) => (((p % columns) - columns / 2) ** 2 + (Math.floor(p / columns) - rows / 2) ** 2 <= (0.4 * rows) ** 2 ? 255 : 0)));
        await writeFile(join(site.dir, member.file.replace(/\.dcm$/, '.mask.png')), await sharp(disc, { raw: { width: columns, height: rows, channels: 1 } }).png().toBuffer());
      }
    }
    const study = await runApprovedStudy(consortium, regionLinearStudy, 170_000);
    expect(study.error).toBeNull();
    expect(study.status).toBe('completed');
    expect(study.rounds.map((r) => r.status)).toEqual(['closed', 'closed']);
    // Each site trained on its images with a body outline: all but the one without.
    const sites = await consortium.request<Array<{ id: string; dataset: { studyId: string; accepted: number; rejectedByReason: Record<string, number>; byClass: Record<string, number> } | null }>>('GET', '/sites');
    for (const generated of consortium.data.sites) {
      const dataset = sites.find((s) => s.id === generated.id)?.dataset;
      expect(dataset?.studyId, JSON.stringify(sites)).toBe(study.id);
      expect(dataset?.accepted).toBe(generated.members.length - 1);
      expect(dataset?.rejectedByReason).toEqual({ 'missing-mask': 1 });
      expect((dataset?.byClass.normal ?? 0) + (dataset?.byClass.lesion ?? 0)).toBe(dataset?.accepted);
    }
    const round2 = await settledRound(study.id, 2);
    expect(round2?.sites.map((s) => s.shared)).toEqual(['counts', 'counts', 'counts']);
    expect(round2?.overall?.samples).toBeGreaterThan(0);
  }, 240_000);

  /** Round `number`'s federated evaluation once all three sites have reported it (as far as it got within 60 s). */
  async function settledRound(studyId: string, number: number): Promise<EvaluationRound | undefined> {
    let round: EvaluationRound | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      round = (await local.get().request<{ rounds: EvaluationRound[] }>('GET', `/studies/${studyId}/evaluation`)).rounds.find((r) => r.number === number);
      if (round && round.pendingSites.length === 0 && round.sites.length === 3) break;
    }
    return round;
  }

  /** The study's statistics once every site has reported the totals it decrypted (null if they never came). */
  async function reportedStatistics(studyId: string): Promise<StatisticsView | null> {
    let stats: StatisticsView | null = null;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      stats = (await local.get().request<{ statistics: StatisticsView | null }>('GET', `/studies/${studyId}`)).statistics;
      if (stats && (await reportsOfAllSites(studyId)) === 3) break;
    }
    return stats;
  }

  async function reportsOfAllSites(studyId: string): Promise<number> {
    const audit = await local.get().request<{ records: unknown[] }>('GET', `/audit/records?studyId=${studyId}&kind=site.statistics&limit=100`, undefined, 'auditor');
    return audit.records.length;
  }
});
