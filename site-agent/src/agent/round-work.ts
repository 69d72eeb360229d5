import {
  consortiumMultipartyFingerprint,
  contributionVector,
  parameterCount,
  createLogger,
  largestChange,
  MAX_WEIGHT_CHANGE,
  sampleWeight,
  federation,
  float32ToBytes,
  isStatisticsRound,
  sha256Hex,
  tagVector,
  type Logger,
  type StudyDefinition,
} from '@federa/shared';
import { CoordinatorRefusal } from '../client/index.js';
import type { SiteConfig } from '../config/index.js';
import { LabelsCsvError } from '../data/index.js';
import type { LedgerEncryption } from '../ledger/index.js';
import type { Outbound } from '../outbound/index.js';
import { configuredThreads, evaluateModel, trainLocal, type BackendInfo, type TrainOptions } from '../train/index.js';
import type { MultipartyKeys } from '../multiparty/index.js';
import { PolicyRefusalError } from '../policy/index.js';
import { budgetRefusal, plannedRound, privatizeUpdate, roundRecord, type PrivacyAccounts } from '../privacy/index.js';
import type { GlobalModels, KeyHolder } from './global-models.js';
import type { RoundState, RoundStateStore } from './round-state.js';
import type { PreparedData, SiteData } from './site-data.js';
import { heldOutCounts } from './held-out-counts.js';
import { RoundReports } from './round-reports.js';
import { StatisticsWork } from './statistics-round.js';

/** Training moved a weight further than an update may (the encrypted sum's bound): reported as diverged. */
export class UpdateOutOfRangeError extends Error {
  override readonly name = 'UpdateOutOfRangeError';
}

/** The site has nothing it can train on for a study: reported to the coordinator, not retried. */
export class NoUsableDataError extends Error {
  override readonly name = 'NoUsableDataError';
}

export interface RoundWorkEvents {
  onRoundUploaded?: (state: RoundState) => void;
  /** Called when this process trained a round (not when it resends an update trained before a restart). */
  onTrained?: (state: RoundState) => void;
}

/** How this site's updates are encrypted, for the ledger: the scheme, the key's fingerprint, the parameters. */
export interface Encryption {
  keys: () => Promise<KeyHolder>;
  ledger: () => Promise<LedgerEncryption>;
  /** Multiparty aggregation (per-site key shares); null without a kit. */
  multiparty: MultipartyKeys | null;
}

/**
 * A round's work at the site, on a definition the TaskGate verified: train from the global model, form the update
 * (weighted, with contribution slots), encrypt it, keep it on disk and send it through the outbound path; score a
 * published model on the held-out split. The round state on disk means a round is trained at most once.
 */
export class RoundWork {
  private readonly log: Logger;
  private readonly statistics: StatisticsWork;
  private readonly reports: RoundReports;

  constructor(
    private readonly config: SiteConfig,
    private readonly outbound: Outbound,
    private readonly rounds: RoundStateStore,
    private readonly models: GlobalModels,
    private readonly data: SiteData,
    private readonly encryption: Encryption | null,
    private readonly backend: () => BackendInfo | undefined,
    private readonly privacy: PrivacyAccounts,
    private readonly events: RoundWorkEvents = {},
  ) {
    this.log = createLogger('site-agent').child({ siteId: config.site.id });
    this.statistics = new StatisticsWork(config, outbound, rounds, models);
    this.reports = new RoundReports(config, outbound);
  }

  async train(task: federation.TrainTask, def: StudyDefinition): Promise<void> {
    const log = this.log.child({ studyId: task.studyId, round: task.round });
    let state = await this.rounds.read(task.studyId, task.round);
    const until = task.deadlineUnixMs > 0 ? Number(task.deadlineUnixMs) : Date.now() + 24 * 3600_000;
    const epoch = def.aggregation === 'multiparty' ? this.multipartyEpoch(task) : undefined;
    // Joined first (the share goes out before training), so the epoch's key is ready when the update is.
    if (epoch) await this.multiparty().join(task.studyId, epoch, until, task.baseModel?.keyEpoch ?? 0);
    if (state?.status === 'uploaded' && state.keyEpoch === epoch?.number) {
      log.info('round already uploaded; not training again');
      return;
    }
    if (!state) {
      state = await this.trainRound(task, def, log, epoch, until);
      this.events.onTrained?.(state);
    } else if (epoch && state.keyEpoch !== epoch.number) {
      log.warn({ epoch: epoch.number, previous: state.keyEpoch }, 'the round runs again under a new key epoch: encrypting the update trained before under its key');
      state = await this.reencrypt(task, def, state, epoch, until);
    } else log.info('resending the update trained before an interruption');
    // Metrics go first so the round's table is complete by the time the last update closes it; a statistics round
    // trained nothing and has none.
    if (!state.statistics) await this.reports.metrics(state);

    const update = await this.rounds.readUpdate(task.studyId, task.round);
    if (sha256Hex(update) !== state.updateSha256) {
      throw new Error(`stored update for round ${task.round} does not match its recorded hash; delete ${this.rounds.updatePath(task.studyId, task.round)} to retrain`);
    }
    const encrypted = state.encoding === federation.UpdateEncoding.UPDATE_ENCODING_CKKS;
    const ledgerEncryption: LedgerEncryption | null =
      state.keyEpoch !== undefined
        ? multipartyLedgerEncryption(task.studyId, state.keyEpoch)
        : encrypted && this.encryption
          ? await this.encryption.ledger()
          : null;
    let receipt: Pick<federation.UploadReceipt, 'sha256' | 'receivedBytes' | 'receivedAtUnixMs'>;
    try {
      receipt = await this.outbound.uploadUpdate(
        {
          studyId: task.studyId,
          round: task.round,
          encoding: state.encoding,
          vectorLength: state.vectorLength,
          baseModelSha256: state.baseModelSha256,
          ...(state.baseStateSha256 ? { baseStateSha256: state.baseStateSha256 } : {}),
          ...(state.contribution ? { contribution: state.contribution } : {}),
        },
        update,
        ledgerEncryption,
        // Retried while the round is open (the coordinator refuses late uploads anyway).
        task.deadlineUnixMs > 0 ? Number(task.deadlineUnixMs) : undefined,
        state.privacy ? { privacy: state.privacy } : {},
      );
    } catch (error) {
      // The coordinator already has this exact update (an earlier attempt's receipt was lost in transit).
      if (error instanceof CoordinatorRefusal && error.statusName === 'ALREADY_EXISTS' && error.message.includes(state.updateSha256)) {
        receipt = { sha256: state.updateSha256, receivedBytes: update.byteLength, receivedAtUnixMs: Date.now() };
      } else throw error;
    }
    state = await this.rounds.markUploaded(state, receipt);
    log.info({ bytes: receipt.receivedBytes, sha256: receipt.sha256 }, 'update uploaded and acknowledged');
    this.events.onRoundUploaded?.(state);
  }

  private multiparty(): MultipartyKeys {
    const keys = this.encryption?.multiparty;
    if (!keys) throw new Error('this study aggregates with multiparty keys, which needs the site kit: set coordinator.kit in site.yaml');
    return keys;
  }

  private multipartyEpoch(task: federation.TrainTask): federation.KeyEpochRef {
    if (!task.keyEpoch) throw new Error(`the train task of round ${task.round} of a multiparty study names no key epoch`);
    return task.keyEpoch;
  }

  /**
   * The round runs again under a new key epoch (a member was lost): the update trained before is encrypted again,
   * with its contribution slots laid out for the new cohort. Nothing is trained twice.
   */
  private async reencrypt(task: federation.TrainTask, def: StudyDefinition, state: RoundState, epoch: federation.KeyEpochRef, until: number): Promise<RoundState> {
    // Statistics are computed again (cheap, and deterministic) rather than stored in the clear beside the update.
    if (state.statistics) return this.statisticsRound(task, def, await this.loadForTraining(task, def, this.log), epoch, until);
    const plain = await this.rounds.readPlainUpdate(task.studyId, task.round);
    const weighted = parameterCount(def.model) + 1;
    const vector = new Float32Array(weighted + task.cohort.length);
    vector.set(plain.subarray(0, weighted));
    const own = task.cohort.indexOf(this.config.site.id);
    if (own < 0) throw new Error(`site ${this.config.site.id} is not in the cohort of round ${task.round}`);
    vector[weighted + own] = 1;
    const encrypted = await this.multiparty().encryptUpdate({ studyId: task.studyId, round: task.round, keyEpoch: epoch }, vector, until);
    const next: RoundState = {
      ...state,
      status: 'trained',
      updateSha256: sha256Hex(encrypted.payload),
      vectorLength: encrypted.vectorLength,
      keyEpoch: epoch.number,
      contribution: encrypted.contribution,
    };
    delete next.receipt;
    await this.rounds.saveTrained(next, encrypted.payload, float32ToBytes(vector));
    return next;
  }

  private async trainRound(
    task: federation.TrainTask,
    def: StudyDefinition,
    log: Logger,
    epoch: federation.KeyEpochRef | undefined,
    until: number,
  ): Promise<RoundState> {
    if (!task.baseModel) throw new Error('train task is missing its base model');
    const data = await this.loadForTraining(task, def, log);
    // Before the no-data check: a site that can use nothing is exactly the one whose summary explains why.
    await this.reports.datasetSummary(task.studyId, data);
    if (data.train.count === 0) {
      // The count stays here: the message goes to the coordinator, whatever the policy shares.
      log.error({ rejected: data.rejected }, 'no usable training images');
      throw new NoUsableDataError('no usable training images at this site; its IT can run `federa-site data scan` to see why');
    }
    if (isStatisticsRound(def, task.round)) return this.statisticsRound(task, def, data, epoch, until);
    const spec = await this.statistics.trainingSpec(task, def);
    // What the round would spend, checked against the hospital's budget before any image is trained on.
    const planned = plannedRound(def, data.train.count);
    const spent = await this.privacy.spend(task.studyId);
    const refusal = budgetRefusal(def, task.round, planned, spent, this.config.policy);
    if (refusal) throw new PolicyRefusalError(refusal);
    const privacy = planned ? roundRecord(planned, spent) : undefined;
    const { weights: base, baseStateSha256 } = await this.models.trainingBase(task.studyId, task.round - 1, def, task.baseModel);
    const work = def.localSteps !== undefined ? { steps: def.localSteps } : { epochs: def.localEpochs ?? 1 };
    log.info({ images: data.train.count, ...work, ...(privacy ? { privacy: privacy.mode, epsilonRound: privacy.epsilonRound, epsilonStudy: privacy.epsilonStudy } : {}) }, 'training');
    const result = await trainLocal(spec, base, data.train, {
      ...work,
      batchSize: def.batchSize,
      learningRate: def.learningRate,
      optimizer: def.optimizer,
      seed: (spec.seed + task.round * 7919) >>> 0,
      threads: configuredThreads(this.config.training.threads),
      ...trainingOptionsOf(def),
      ...(privacy?.mode === 'sample' ? { privacy: { clipNorm: privacy.clipNorm, noiseMultiplier: privacy.noiseMultiplier } } : {}),
    });
    // Site-level DP: the update itself is clipped and gets this site's share of the aggregate's noise.
    const released =
      privacy?.mode === 'site' ? privatizeUpdate(base, result.weights, { clipNorm: privacy.clipNorm, noiseMultiplier: privacy.noiseMultiplier, minSites: def.minSites }).weights : result.weights;
    const validation = data.validation.count > 0 ? await evaluateModel(spec, result.weights, data.validation) : undefined;
    // The encrypted sum's error bound assumes no weight moved by more than 1 in a round: a larger move is a training
    // that went wrong, reported as such rather than sent.
    const change = largestChange(base, released);
    if (!(change <= MAX_WEIGHT_CHANGE)) {
      const why = privacy?.mode === 'site' ? 'with its site-level noise; the study\'s privacy.clipNorm is too large for its noise multiplier' : 'lower the learning rate';
      throw new UpdateOutOfRangeError(`a weight moved by ${change.toPrecision(3)} in one round, more than the ${MAX_WEIGHT_CHANGE} an update may; ${why}`);
    }
    // FedAvg weights each site by its number of training samples (capped: sampleWeight), except under site-level DP,
    // where every site weighs the same (a sample-count weight would scale one site's clipped influence); the weight
    // rides in the vector, followed by the contribution slots that let every site check what an aggregate is made of.
    const weight = privacy?.mode === 'site' ? 1 : sampleWeight(result.samples);
    const vector = contributionVector(base, released, weight, task.cohort, this.config.site.id);
    const plain = float32ToBytes(vector);
    const encrypted = def.aggregation !== 'plaintext';
    let update = plain;
    let vectorLength = vector.length;
    let contribution: RoundState['contribution'];
    if (epoch) {
      const sealed = await this.multiparty().encryptUpdate({ studyId: task.studyId, round: task.round, keyEpoch: epoch }, vector, until);
      update = sealed.payload;
      vectorLength = sealed.vectorLength;
      contribution = sealed.contribution;
    } else if (encrypted) {
      if (!this.encryption) throw new Error('this study encrypts its updates, which needs the CKKS secret key from the site kit: set coordinator.kit in site.yaml');
      const { context, secretKey, tagKey } = await this.encryption.keys();
      // Every ciphertext also carries this site's contribution tags, which only key holders can make.
      const tagged = tagVector(vector, context.valuesPerCiphertext, tagKey, { studyId: task.studyId, round: task.round }, this.config.site.id);
      vectorLength = tagged.length;
      update = context.encryptVector(tagged, secretKey);
    }
    const state: RoundState = {
      studyId: task.studyId,
      round: task.round,
      status: 'trained',
      baseModelSha256: task.baseModel.sha256,
      ...(baseStateSha256 ? { baseStateSha256 } : {}),
      updateSha256: sha256Hex(update),
      vectorLength,
      encoding: task.encoding,
      samples: result.samples,
      trainLoss: result.loss,
      trainAccuracy: result.accuracy,
      validationLoss: validation?.loss ?? null,
      validationAccuracy: validation?.accuracy ?? null,
      validationSamples: validation?.samples ?? 0,
      backend: result.backend,
      trainSeconds: result.seconds,
      trainThreads: result.threads,
      ...(privacy ? { privacy } : {}),
      ...(epoch ? { keyEpoch: epoch.number } : {}),
      ...(contribution ? { contribution } : {}),
    };
    await this.rounds.saveTrained(state, update, encrypted ? plain : undefined);
    log.info({ loss: result.loss, accuracy: result.accuracy, validationAccuracy: state.validationAccuracy, seconds: result.seconds, threads: result.threads }, 'local training done');
    return state;
  }

  /** Round 1 of a study with statistics: this site's statistics, sealed like an update (see StatisticsWork). */
  private async statisticsRound(task: federation.TrainTask, def: StudyDefinition, data: PreparedData, epoch: federation.KeyEpochRef | undefined, until: number): Promise<RoundState> {
    return this.statistics.round(task, def, data, async (vector) => {
      if (epoch) {
        const sealed = await this.multiparty().encryptUpdate({ studyId: task.studyId, round: task.round, keyEpoch: epoch }, vector, until);
        return { update: sealed.payload, vectorLength: sealed.vectorLength, contribution: sealed.contribution };
      }
      if (!this.encryption) throw new Error('this study encrypts its statistics, which needs the CKKS secret key from the site kit: set coordinator.kit in site.yaml');
      const { context, secretKey, tagKey } = await this.encryption.keys();
      const tagged = tagVector(vector, context.valuesPerCiphertext, tagKey, { studyId: task.studyId, round: task.round }, this.config.site.id);
      return { update: context.encryptVector(tagged, secretKey), vectorLength: tagged.length };
    });
  }

  /**
   * The site's data for a task, z-scored with the consortium's statistics in the training rounds of a study that asks
   * for it. Data that cannot be loaded at all (a labels file missing or malformed, a data
   * folder gone) is this site's answer for the round, reported as no usable data so the round does not wait for
   * its deadline; the details (paths) stay in the local log.
   */
  private async loadForTraining(task: { studyId: string; round: number }, def: StudyDefinition, log: Logger): Promise<PreparedData> {
    let prepared: PreparedData;
    try {
      prepared = await this.data.prepare(def);
    } catch (error) {
      log.error({ err: error }, 'could not load this site\'s data');
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT' ? (error as NodeJS.ErrnoException).path : undefined;
      const what =
        error instanceof LabelsCsvError
          ? 'its labels file is invalid'
          : missing !== undefined && missing === this.config.data.labels
            ? 'its labels file is missing'
            : missing !== undefined
              ? 'its data folder (or a file in it) is missing'
              : 'its data could not be read';
      throw new NoUsableDataError(`this site cannot train: ${what}; its IT can run \`federa-site doctor\` and \`federa-site data scan\``);
    }
    return this.statistics.zScored(task, def, prepared);
  }

  /**
   * Scores the global model a round published on this site's held-out split (never trained on) and reports what the
   * policy lets out: counts (coarsened), figures, or a refusal. Evaluation is reported, not a gate: when it fails
   * here the site logs why and reports nothing for the round.
   */
  async evaluate(task: federation.EvaluateTask, def: StudyDefinition): Promise<void> {
    const log = this.log.child({ studyId: task.studyId, round: task.round });
    if (!task.globalModel) throw new Error('evaluate task is missing its global model');
    if (isStatisticsRound(def, task.round)) {
      await this.statistics.report(task, def);
      return;
    }
    const started = performance.now();
    const spec = await this.statistics.trainingSpec(task, def);
    const loaded = await this.data.prepare(def);
    await this.reports.datasetSummary(task.studyId, loaded);
    const data = await this.statistics.zScored(task, def, loaded);
    const { validation } = data;
    // The cache the next round's training reads its base model from: fetched and decrypted once for both.
    const weights = await this.models.weights(task.studyId, task.round, def, task.globalModel);
    const counts = await heldOutCounts(spec, weights, validation, task.bins);
    const seconds = (performance.now() - started) / 1000;
    try {
      const shared = await this.outbound.reportEvaluation(
        counts,
        { studyId: task.studyId, round: task.round, classNames: def.classNames, backend: this.backend()?.name ?? '', seconds },
        task.studyHash,
      );
      log.info({ images: validation.count, seconds, shared }, 'evaluation of the global model done');
    } catch (error) {
      if (error instanceof CoordinatorRefusal && error.statusName === 'ALREADY_EXISTS') log.info('evaluation of this round was already reported');
      else throw error;
    }
  }
}

/** How a multiparty update is encrypted, for the ledger: the epoch's collective key and the consortium parameters. */
function multipartyLedgerEncryption(studyId: string, epoch: number): LedgerEncryption {
  return { scheme: 'ckks-multiparty', keyFingerprint: `study ${studyId} key epoch ${epoch}`, parameters: { fingerprint: consortiumMultipartyFingerprint() } };
}

/** The study's augmentation, class weighting, FedProx and segmentation-loss settings, as training options. */
function trainingOptionsOf(def: StudyDefinition): Pick<TrainOptions, 'augmentation' | 'classWeights' | 'proximalMu' | 'segmentationLoss'> {
  return {
    ...(def.segmentation ? { segmentationLoss: def.segmentation.loss } : {}),
    ...(def.augmentation ? { augmentation: { ...def.augmentation } } : {}),
    ...(def.classWeights ? { classWeights: def.classWeights } : {}),
    ...(def.fedProxMu > 0 ? { proximalMu: def.fedProxMu } : {}),
  };
}
