import {
  createLogger,
  federation,
  intensityFeature,
  isStatisticsRound,
  modelFeatureStandardize,
  sha256Hex,
  type LinearArchitectureSpec,
  type StudyDefinition,
} from '@federa/shared';
import type { SiteConfig, SitePolicy } from '../config/index.js';
import type { Outbound } from '../outbound/index.js';
import { PolicyRefusalError } from '../policy/index.js';
import { channelMoments, consortiumZScore, harmoniseChannels, modelFeatureColumns, siteStatisticsVector } from '../statistics/index.js';
import type { GlobalModels } from './global-models.js';
import type { RoundState, RoundStateStore } from './round-state.js';
import type { PreparedData } from './site-data.js';

/** An update ready to upload: its bytes, how many values it decodes to, and (multiparty) the signed statement. */
export interface SealedUpdate {
  update: Uint8Array;
  vectorLength: number;
  contribution?: federation.SignedContribution | undefined;
}

/**
 * A statistics round's update: this site's statistics vector, weight 1 and its contribution slot, encrypted like a
 * model update (`seal`), so only the consortium's sum can ever be decrypted. Nothing is trained; the round state
 * records the images the statistics cover.
 */
export async function statisticsRoundState(
  task: federation.TrainTask,
  def: StudyDefinition,
  data: PreparedData,
  policy: SitePolicy,
  siteId: string,
  seal: (vector: Float64Array) => Promise<SealedUpdate>,
): Promise<{ state: RoundState; update: Uint8Array; plain: Uint8Array }> {
  if (!isStatisticsRound(def, task.round)) throw new Error(`round ${task.round} of study ${task.studyId} is not a statistics round`);
  const started = performance.now();
  const parts = [data.train, data.validation];
  const statistics = siteStatisticsVector(def, parts, policy.minStatisticsCount, await modelFeatureColumns(def, parts));
  const own = task.cohort.indexOf(siteId);
  if (own < 0) throw new Error(`site ${siteId} is not in the cohort of round ${task.round}`);
  const vector = new Float64Array(statistics.length + 1 + task.cohort.length);
  vector.set(statistics);
  vector[statistics.length] = 1;
  vector[statistics.length + 1 + own] = 1;
  const sealed = await seal(vector);
  const images = data.train.count + data.validation.count;
  const state: RoundState = {
    studyId: task.studyId,
    round: task.round,
    status: 'trained',
    baseModelSha256: task.baseModel?.sha256 ?? '',
    updateSha256: sha256Hex(sealed.update),
    vectorLength: sealed.vectorLength,
    encoding: task.encoding,
    samples: images,
    trainLoss: 0,
    trainAccuracy: 0,
    validationLoss: null,
    validationAccuracy: null,
    validationSamples: 0,
    backend: 'statistics',
    trainSeconds: (performance.now() - started) / 1000,
    statistics: true,
    ...(task.keyEpoch && def.aggregation === 'multiparty' ? { keyEpoch: task.keyEpoch.number } : {}),
    ...(sealed.contribution ? { contribution: sealed.contribution } : {}),
  };
  return { state, update: sealed.update, plain: new Uint8Array(vector.buffer.slice(0)) };
}

/**
 * A study's statistics at this site: round 1's encrypted statistics, the consortium totals reported after they are
 * decrypted, and the consortium z-score of the training rounds that follow.
 */
export class StatisticsWork {
  private readonly log;

  constructor(
    private readonly config: SiteConfig,
    private readonly outbound: Outbound,
    private readonly rounds: RoundStateStore,
    private readonly models: GlobalModels,
  ) {
    this.log = createLogger('site-agent').child({ siteId: config.site.id });
  }

  /**
   * Round 1 of a study with statistics: this site's statistics, sealed (`seal`) like an update and stored as the
   * round's state. Under a privacy budget the round is refused, since its totals carry no differential-privacy noise.
   */
  async round(task: federation.TrainTask, def: StudyDefinition, data: PreparedData, seal: (vector: Float64Array) => Promise<SealedUpdate>): Promise<RoundState> {
    if (this.config.policy.privacyBudget) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET,
        message: `round ${task.round} of study ${task.studyId} computes exact statistics without differential-privacy noise, and this site has a privacy budget`,
      });
    }
    const { state, update, plain } = await statisticsRoundState(task, def, data, this.config.policy, this.config.site.id, seal);
    await this.rounds.saveTrained(state, update, plain);
    this.log.info({ studyId: task.studyId, round: task.round, images: state.samples }, 'statistics computed and encrypted');
    return state;
  }

  /**
   * The model the training rounds train and evaluate: the study's, or with statistics.modelFeatures its linear model
   * standardised with the consortium's mean and standard deviation of each feature, from round 1's totals.
   */
  async trainingSpec(task: { studyId: string; round: number }, def: StudyDefinition): Promise<StudyDefinition['model']> {
    if (!def.statistics?.modelFeatures || isStatisticsRound(def, task.round)) return def.model;
    const { features } = await this.models.statistics(task.studyId, def);
    return { ...(def.model as LinearArchitectureSpec & StudyDefinition['model']), standardize: modelFeatureStandardize(def, features) };
  }

  /**
   * The training rounds after the statistics round: with statistics.harmonise each channel moved from this site's own
   * moments to the consortium's, then with statistics.zScore scaled by the consortium's (or, harmonised, to mean 0
   * and standard deviation 1).
   */
  async zScored(task: { studyId: string; round: number }, def: StudyDefinition, data: PreparedData): Promise<PreparedData> {
    const stats = def.statistics;
    if (!stats || !(stats.zScore || stats.harmonise) || isStatisticsRound(def, task.round)) return data;
    const { features } = await this.models.statistics(task.studyId, def);
    const moments = Array.from({ length: def.model.channels }, (_, c) => {
      const stat = features.find((f) => f.feature === intensityFeature(def.model.channels, c));
      if (!stat || stat.mean === null || stat.std === null) throw new Error(`the consortium statistics of study ${task.studyId} have no intensity mean and standard deviation for channel ${c}`);
      return { mean: stat.mean, std: stat.std };
    });
    if (stats.harmonise) {
      const own = channelMoments([data.train, data.validation], def.model.channels);
      const target = stats.zScore ? moments.map(() => ({ mean: 0, std: 1 })) : moments;
      return { ...data, train: harmoniseChannels(data.train, own, target), validation: harmoniseChannels(data.validation, own, target) };
    }
    return { ...data, train: consortiumZScore(data.train, moments), validation: consortiumZScore(data.validation, moments) };
  }

  /**
   * A statistics round's answer to its evaluate task: the consortium totals this site decrypted (under shareMetrics
   * none, a refusal instead). The coordinator compares every site's totals by hash.
   */
  async report(task: federation.EvaluateTask, def: StudyDefinition): Promise<void> {
    const log = this.log.child({ studyId: task.studyId, round: task.round });
    const { json, sha256 } = await this.models.statistics(task.studyId, def, task.globalModel);
    if (this.config.policy.shareMetrics === 'none') {
      await this.outbound.reportRefusal({
        studyId: task.studyId,
        round: task.round,
        task: federation.TaskKind.TASK_KIND_EVALUATE,
        reason: federation.RefusalReason.REFUSAL_REASON_METRICS_WITHHELD,
        message: 'this site\'s policy shares no metrics (policy.shareMetrics: none), not even the consortium\'s statistics',
        studyHash: task.studyHash,
      });
      return;
    }
    const matches = await this.outbound.reportStatistics({ studyId: task.studyId, round: task.round, statisticsJson: json, sha256 });
    if (matches) log.info({ sha256 }, 'consortium statistics reported');
    else log.error({ sha256 }, 'the consortium statistics this site decrypted differ from those another site reported first: delete this study\'s model cache and restart');
  }
}
