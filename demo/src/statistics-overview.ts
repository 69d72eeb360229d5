import type { FeatureStatisticsView, StudyDefinitionInput } from '@federa/shared';
import type { LocalConsortium } from './consortium.js';

/**
 * `npm run demo -- --statistics`: before training, the consortium runs a statistics-only study (a dataset overview):
 * every hospital encodes its images' intensity and feature statistics, the coordinator sums them encrypted, and the
 * hospitals decrypt only the consortium's totals, printed here as they reported them.
 */
export async function statisticsOverview(consortium: LocalConsortium, out: (line?: string) => boolean, base: Pick<StudyDefinitionInput, 'model' | 'classNames' | 'aggregation'>): Promise<void> {
  if (base.aggregation === 'plaintext') {
    out('Skipping the statistics overview: statistics need an encrypted aggregation (only consortium totals may be decrypted).');
    return;
  }
  const sites = consortium.sites.length;
  const definition: StudyDefinitionInput = {
    ...base,
    name: 'Dataset overview',
    rounds: 1,
    minSites: sites,
    batchSize: 16,
    learningRate: 0.001,
    roundTimeoutSeconds: 300,
    statistics: {
      intensity: { bins: 32, min: 0, max: 1 },
      features: [
        { name: 'firstorder_mean', min: 0, max: 1 },
        { name: 'firstorder_std', min: 0, max: 0.5 },
        { name: 'edges_density', min: 0, max: 1 },
        { name: 'glcm_contrast', min: 0, max: 2 },
      ],
      featureBins: 20,
    },
  };
  const started = Date.now();
  const study = await consortium.createStudy(definition);
  await consortium.approve(study.specHash);
  const finished = await consortium.runStudy(study.id, 300_000);
  if (finished.status !== 'completed') throw new Error(`the statistics study ended ${finished.status}: ${finished.error ?? ''}`);
  type Reported = { features: FeatureStatisticsView[]; mismatchedSites: string[] };
  const reported = async (): Promise<Reported> => {
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
      const found = (await consortium.request<{ statistics: Reported | null }>('GET', `/studies/${study.id}`)).statistics;
      if (found) return found;
    }
    throw new Error('no hospital reported the decrypted statistics within a minute');
  };
  const statistics = await reported();
  out();
  out(`Dataset overview (study ${study.id}, ${((Date.now() - started) / 1000).toFixed(1)} s): consortium totals of ${sites} hospitals, decrypted by the hospitals only`);
  const number = (x: number | null, digits = 3): string => (x === null ? '-' : x.toFixed(digits));
  const q = (f: FeatureStatisticsView, at: number): string => number(f.quantiles.find((x) => Math.abs(x.q - at) < 1e-9)?.value ?? null);
  out(`  ${'feature'.padEnd(16)} ${'images'.padStart(6)} ${'mean'.padStart(7)} ${'std'.padStart(7)} ${'p05'.padStart(6)} ${'median'.padStart(6)} ${'p95'.padStart(6)}`);
  for (const f of statistics.features) {
    out(`  ${f.feature.padEnd(16)} ${String(f.units).padStart(6)} ${number(f.mean, 4).padStart(7)} ${number(f.std, 4).padStart(7)} ${q(f, 0.05).padStart(6)} ${q(f, 0.5).padStart(6)} ${q(f, 0.95).padStart(6)}`);
  }
  if (statistics.mismatchedSites.length > 0) out(`  (${statistics.mismatchedSites.join(', ')} decrypted other totals)`);
}
