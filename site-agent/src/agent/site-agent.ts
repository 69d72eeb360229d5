import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  applyAggregate,
  bytesToFloat32,
  CkksContext,
  createLogger,
  evaluationCounts,
  federation,
  InvalidModelSpecError,
  modelSpecFromMessage,
  PreprocessingError,
  float32ToBytes,
  parsePreprocessingJson,
  sha256Hex,
  weightedUpdateVector,
  type Logger,
  type ModelSpec,
} from '@federa/shared';
import { CoordinatorRefusal, FederationClient, isServiceError, type SiteTransport } from '../client/index.js';
import type { SiteConfig } from '../config/index.js';
import { loadLabeledDataset, pipelineHash, summariseLoadedDataset, type LoadedDataset } from '../data/index.js';
import {
  evaluateModel,
  initBackend,
  predictProbabilities,
  trainLocal,
  TrainingDivergedError,
  type BackendInfo,
  type LabeledImages,
  type Optimizer,
  type TrainOptions,
} from '../train/index.js';
import { ModelCache } from './model-cache.js';
import { RoundStateStore, type RoundState } from './round-state.js';
import { splitTrainValidation } from './split.js';

export const AGENT_VERSION = '0.1.0';

/** The site has nothing it can train on for a study: reported to the coordinator, not retried. */
export class NoUsableDataError extends Error {
  override readonly name = 'NoUsableDataError';
}

export interface SiteAgentEvents {
  /** Called after each round this site completed (uploaded and acknowledged). */
  onRoundUploaded?: (state: RoundState) => void;
  onStudyClosed?: (closed: federation.StudyClosed) => void;
  /** Progress of decoding and preprocessing the site's images (the slow part of a first round). */
  onDataProgress?: (done: number, total: number) => void;
}

/** What decides a task's data: both train and evaluate tasks carry these, so both see the same prepared images. */
type DataInputs = Pick<federation.TrainTask, 'classNames' | 'preprocessingJson'>;

interface PreparedData {
  train: LabeledImages;
  validation: LabeledImages;
  rejected: number;
  /** What the dataset summary is made from: file lists and counts, not the pixels. */
  contents: Pick<LoadedDataset, 'files' | 'classCounts' | 'rejected'>;
}

/**
 * The long-running site process: registers with the coordinator, keeps a task stream open (reconnecting
 * with backoff), and for each train task downloads the global model, trains on local data, and uploads the
 * weighted update. Round state on disk guarantees a round is trained at most once, even across restarts.
 */
export class SiteAgent {
  private readonly log: Logger;
  private readonly client: FederationClient;
  private readonly rounds: RoundStateStore;
  private readonly models: ModelCache;
  private readonly ckksSecretKey: Uint8Array | undefined;
  private ckks: Promise<CkksContext> | undefined;
  private readonly datasets = new Map<string, Promise<PreparedData>>();
  /** Studies this process has described its data to; once each, after the first load for the study. */
  private readonly summarised = new Set<string>();
  private backend: BackendInfo | undefined;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private currentStream: { cancel(): void } | undefined;

  constructor(
    private readonly config: SiteConfig,
    transport: SiteTransport,
    private readonly events: SiteAgentEvents = {},
  ) {
    this.log = createLogger('site-agent').child({ siteId: config.site.id });
    this.client = new FederationClient({
      address: config.coordinator.address,
      credentials: transport.credentials,
      ...(transport.declaredSiteId ? { declaredSiteId: transport.declaredSiteId } : {}),
      ...(config.coordinator.serverName ? { serverName: config.coordinator.serverName } : {}),
    });
    this.rounds = new RoundStateStore(config.stateDir);
    this.models = new ModelCache(config.stateDir);
    this.ckksSecretKey = transport.kit?.ckksSecretKey;
  }

  /** Runs until `stop()`; resolves once the agent has shut down. */
  async run(): Promise<void> {
    this.backend = await initBackend(this.config.training.backend);
    this.log.info({ backend: this.backend.name, detail: this.backend.detail }, 'training backend ready');
    let attempt = 0;
    while (!this.stopped) {
      try {
        const registered = await this.client.register({
          agentVersion: AGENT_VERSION,
          backend: this.backend.name,
          supportedEncodings: [
            ...(this.ckksSecretKey ? [federation.UpdateEncoding.UPDATE_ENCODING_CKKS] : []),
            federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32,
          ],
        });
        this.log.info({ coordinatorVersion: registered.coordinatorVersion }, 'registered with the coordinator');
        attempt = 0;
        await this.consumeTasks();
      } catch (error) {
        if (this.stopped) break;
        this.log.warn({ reason: describe(error) }, 'lost the coordinator connection');
      }
      if (this.stopped) break;
      // Exponential backoff with jitter, capped, so a restarting coordinator is not stampeded.
      const delay = Math.min(30_000, 500 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
      attempt = Math.min(attempt + 1, 6);
      this.log.info({ retryInMs: Math.round(delay) }, 'reconnecting');
      await sleep(delay);
    }
    await this.queue;
    this.client.close();
    if (this.ckks) (await this.ckks).dispose();
  }

  stop(): void {
    this.stopped = true;
    this.currentStream?.cancel();
  }

  private consumeTasks(): Promise<void> {
    return new Promise((resolve, reject) => {
      const stream = this.client.streamTasks();
      this.currentStream = stream;
      stream.on('data', (task: federation.Task) => {
        this.queue = this.queue.then(() => this.handleTask(task));
      });
      stream.on('error', (error) => (this.stopped ? resolve() : reject(error)));
      stream.on('end', () => (this.stopped ? resolve() : reject(new Error('the coordinator closed the task stream'))));
    });
  }

  private async handleTask(task: federation.Task): Promise<void> {
    const kind = task.kind;
    if (!kind || this.stopped) return;
    if (kind.$case === 'studyClosed') {
      const closed = kind.value;
      this.log.info({ studyId: closed.studyId, outcome: federation.studyOutcomeToJSON(closed.outcome) }, closed.message);
      if (closed.outcome === federation.StudyOutcome.STUDY_OUTCOME_COMPLETED && closed.finalRound > 0) {
        try {
          await this.globalWeights(closed.studyId, closed.finalRound);
          this.log.info({ studyId: closed.studyId, path: this.models.path(closed.studyId, closed.finalRound) }, 'final global model saved');
        } catch (error) {
          this.log.error({ studyId: closed.studyId, err: error }, 'could not fetch the final global model');
        }
      }
      this.events.onStudyClosed?.(closed);
      return;
    }
    if (kind.$case === 'evaluate') {
      await this.evaluateRound(kind.value);
      return;
    }
    const train = kind.value;
    try {
      await this.runRound(train);
    } catch (error) {
      const reason =
        error instanceof TrainingDivergedError
          ? federation.FailureReason.FAILURE_REASON_DIVERGED
          : error instanceof NoUsableDataError
            ? federation.FailureReason.FAILURE_REASON_NO_USABLE_DATA
            : error instanceof InvalidModelSpecError || error instanceof PreprocessingError
              ? federation.FailureReason.FAILURE_REASON_UNSUPPORTED_TASK
              : undefined;
      if (reason !== undefined) {
        // Tell the coordinator, so the round closes without this site instead of waiting for its deadline.
        this.log.error({ studyId: train.studyId, round: train.round, reason: federation.failureReasonToJSON(reason) }, (error as Error).message);
        await this.client
          .reportRoundFailure({ studyId: train.studyId, round: train.round, reason, message: (error as Error).message })
          .catch((reportError: unknown) => this.log.warn({ reason: describe(reportError) }, 'could not report the failure'));
      } else if (error instanceof CoordinatorRefusal) {
        this.log.warn({ studyId: train.studyId, round: train.round, status: error.statusName, reason: error.message }, 'coordinator refused');
      } else {
        this.log.error({ studyId: train.studyId, round: train.round, err: error }, 'round failed at this site');
      }
    }
  }

  private async runRound(task: federation.TrainTask): Promise<void> {
    const log = this.log.child({ studyId: task.studyId, round: task.round });
    let state = await this.rounds.read(task.studyId, task.round);
    if (state?.status === 'uploaded') {
      log.info('round already uploaded; not training again');
      return;
    }
    if (!state) state = await this.trainRound(task, log);
    else log.info('resending the update trained before an interruption');
    // Metrics go first so the round's table is complete by the time the last update closes it.
    await this.reportMetrics(state);

    const update = await this.rounds.readUpdate(task.studyId, task.round);
    if (sha256Hex(update) !== state.updateSha256) {
      throw new Error(`stored update for round ${task.round} does not match its recorded hash; delete ${this.rounds.updatePath(task.studyId, task.round)} to retrain`);
    }
    let receipt: federation.UploadReceipt;
    try {
      receipt = await this.client.uploadUpdate(
        {
          studyId: task.studyId,
          round: task.round,
          encoding: state.encoding,
          vectorLength: state.vectorLength,
          baseModelSha256: state.baseModelSha256,
        },
        update,
      );
    } catch (error) {
      // The coordinator already has this exact update (an earlier attempt's receipt was lost in transit).
      if (error instanceof CoordinatorRefusal && error.statusName === 'ALREADY_EXISTS' && error.message.includes(state.updateSha256)) {
        receipt = { studyId: task.studyId, round: task.round, sha256: state.updateSha256, receivedBytes: update.byteLength, receivedAtUnixMs: Date.now() };
      } else throw error;
    }
    state = await this.rounds.markUploaded(state, {
      sha256: receipt.sha256,
      receivedBytes: receipt.receivedBytes,
      receivedAtUnixMs: receipt.receivedAtUnixMs,
    });
    log.info({ bytes: receipt.receivedBytes, sha256: receipt.sha256 }, 'update uploaded and acknowledged');
    this.events.onRoundUploaded?.(state);
  }

  private async trainRound(task: federation.TrainTask, log: Logger): Promise<RoundState> {
    if (!task.model || !task.training || !task.baseModel) throw new Error('train task is missing its model, settings or base model');
    const spec = modelSpecOf(task.model);
    const data = await this.prepareData(spec, task);
    // Before the no-data check: a site that can use nothing is exactly the one whose summary explains why.
    await this.reportDatasetSummary(task.studyId, data);
    if (data.train.count === 0) {
      throw new NoUsableDataError(`no usable training images (${data.rejected} rejected); run \`federa-site data scan\` to see why`);
    }
    const base = await this.globalWeights(task.studyId, task.round - 1, task.baseModel);
    const work = localWork(task.training);
    log.info({ images: data.train.count, ...work }, 'training');
    const result = await trainLocal(spec, base, data.train, {
      ...work,
      batchSize: task.training.batchSize,
      learningRate: task.training.learningRate,
      optimizer: optimizerOf(task.training.optimizer),
      seed: (spec.seed + task.round * 7919) >>> 0,
      ...studyTrainingOptions(task.training),
    });
    const validation = data.validation.count > 0 ? await evaluateModel(spec, result.weights, data.validation) : undefined;
    // FedAvg weights each site by its number of training samples; the weight rides in the vector's last slot.
    const vector = weightedUpdateVector(base, result.weights, result.samples);
    const plain = float32ToBytes(vector);
    const encrypted = task.encoding === federation.UpdateEncoding.UPDATE_ENCODING_CKKS;
    if (!encrypted && task.encoding !== federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32) {
      throw new Error(`train task asks for update encoding ${federation.updateEncodingToJSON(task.encoding)}, which this agent does not know; upgrade the site agent`);
    }
    const update = encrypted ? (await this.ckksContext()).encryptVector(vector, this.secretKey()) : plain;
    const state: RoundState = {
      studyId: task.studyId,
      round: task.round,
      status: 'trained',
      baseModelSha256: task.baseModel.sha256,
      updateSha256: sha256Hex(update),
      vectorLength: vector.length,
      encoding: task.encoding,
      samples: result.samples,
      trainLoss: result.loss,
      trainAccuracy: result.accuracy,
      validationLoss: validation?.loss ?? null,
      validationAccuracy: validation?.accuracy ?? null,
      validationSamples: validation?.samples ?? 0,
      backend: result.backend,
      trainSeconds: result.seconds,
    };
    await this.rounds.saveTrained(state, update, encrypted ? plain : undefined);
    log.info(
      { loss: result.loss, accuracy: result.accuracy, validationAccuracy: state.validationAccuracy, seconds: result.seconds },
      'local training done',
    );
    return state;
  }

  /**
   * Scores the global model a round published on this site's held-out split (never trained on) and reports counts
   * only: a confusion matrix and score histograms, no per-image result. Evaluation is reported, not a gate: when it
   * fails here the site logs why and reports nothing for the round.
   */
  private async evaluateRound(task: federation.EvaluateTask): Promise<void> {
    const log = this.log.child({ studyId: task.studyId, round: task.round });
    try {
      if (!task.model || !task.globalModel) throw new Error('evaluate task is missing its model spec or global model');
      const started = performance.now();
      const spec = modelSpecOf(task.model);
      const data = await this.prepareData(spec, task);
      await this.reportDatasetSummary(task.studyId, data);
      const { validation } = data;
      // The cache the next round's training reads its base model from: fetched and decrypted once for both.
      const weights = await this.globalWeights(task.studyId, task.round, task.globalModel);
      const probabilities = validation.count > 0 ? await predictProbabilities(spec, weights, validation) : new Float64Array(0);
      const counts = evaluationCounts(probabilities, validation.labels, spec.classes, task.bins);
      const seconds = (performance.now() - started) / 1000;
      await this.client.reportEvaluation({
        studyId: task.studyId,
        round: task.round,
        classNames: task.classNames,
        bins: counts.bins,
        confusion: counts.confusion,
        positives: counts.positives,
        negatives: counts.negatives,
        backend: this.backend?.name ?? '',
        seconds,
      });
      log.info({ images: validation.count, seconds }, 'evaluation of the global model reported');
    } catch (error) {
      if (error instanceof CoordinatorRefusal && error.statusName === 'ALREADY_EXISTS') {
        log.info('evaluation of this round was already reported');
      } else if (error instanceof CoordinatorRefusal) {
        log.warn({ status: error.statusName, reason: error.message }, 'coordinator refused the evaluation');
      } else {
        log.error({ err: error }, 'could not evaluate the global model; nothing reported for this round');
      }
    }
  }

  /**
   * The global weights after `round` (0 = the initial model). A plaintext study publishes them; an encrypted one
   * publishes the encrypted sum of the round's updates, which this site decrypts and applies to the weights of
   * the round before (fetching and decrypting earlier rounds it missed, once).
   */
  private async globalWeights(studyId: string, round: number, known?: federation.ModelRef): Promise<Float32Array> {
    const cached = await this.models.read(studyId, round);
    if (cached) return cached;
    const artifact = known
      ? { header: known, bytes: await this.client.downloadModel(known) }
      : await this.client.downloadArtifact(studyId, round);
    let weights: Float32Array;
    switch (artifact.header.kind) {
      case federation.ModelKind.MODEL_KIND_WEIGHTS:
        weights = bytesToFloat32(artifact.bytes, `global model of round ${round}`);
        break;
      case federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE: {
        const previous = await this.globalWeights(studyId, round - 1);
        const sum = (await this.ckksContext()).decryptVector(artifact.bytes, this.secretKey());
        weights = applyAggregate(previous, sum);
        break;
      }
      default:
        throw new Error(`round ${round} of study ${studyId} published an artifact of unknown kind ${federation.modelKindToJSON(artifact.header.kind)}`);
    }
    await this.models.write(studyId, round, weights);
    return weights;
  }

  /**
   * Tells the coordinator what data this site loaded for a study, as counts by category only (see
   * summariseLoadedDataset), once per study and process. Informational: failing is logged, never fatal; a refusal
   * is not retried, anything else is on the next task.
   */
  private async reportDatasetSummary(studyId: string, data: PreparedData): Promise<void> {
    if (this.summarised.has(studyId)) return;
    this.summarised.add(studyId);
    try {
      const summary = await summariseLoadedDataset(this.config.data.dir, data.contents);
      await this.client.reportDatasetSummary({ studyId, ...summary });
      this.log.info({ studyId, files: summary.files, accepted: summary.accepted }, 'dataset summary reported');
    } catch (error) {
      if (error instanceof CoordinatorRefusal) {
        this.log.warn({ studyId, status: error.statusName, reason: error.message }, 'coordinator refused the dataset summary');
      } else {
        this.summarised.delete(studyId);
        this.log.warn({ studyId, reason: describe(error) }, 'could not report the dataset summary; will try again');
      }
    }
  }

  private secretKey(): Uint8Array {
    if (!this.ckksSecretKey) {
      throw new Error('this study encrypts its updates, which needs the CKKS secret key from the site kit: set coordinator.kit in site.yaml');
    }
    return this.ckksSecretKey;
  }

  private ckksContext(): Promise<CkksContext> {
    this.ckks ??= CkksContext.fromKey(this.secretKey());
    return this.ckks;
  }

  private async reportMetrics(state: RoundState): Promise<void> {
    const reports: federation.MetricsReport[] = [
      {
        studyId: state.studyId,
        round: state.round,
        kind: federation.MetricKind.METRIC_KIND_TRAIN,
        loss: state.trainLoss,
        accuracy: state.trainAccuracy,
        samples: state.samples,
        seconds: state.trainSeconds,
        backend: state.backend,
      },
    ];
    if (state.validationLoss !== null && state.validationAccuracy !== null) {
      reports.push({
        studyId: state.studyId,
        round: state.round,
        kind: federation.MetricKind.METRIC_KIND_VALIDATION,
        loss: state.validationLoss,
        accuracy: state.validationAccuracy,
        samples: state.validationSamples,
        seconds: 0,
        backend: state.backend,
      });
    }
    for (const report of reports) await this.client.reportMetrics(report);
  }

  /**
   * Decodes and preprocesses the site's images once per input shape and study pipeline and reuses them every
   * round; the tensors are also cached under the state folder, so a restarted agent does not decode again.
   */
  private prepareData(spec: ModelSpec, inputs: DataInputs): Promise<PreparedData> {
    const { classNames } = inputs;
    // Throws for a pipeline this agent does not fully understand: training on a different one would be worse.
    const preprocessing = parsePreprocessingJson(inputs.preprocessingJson);
    const shape = { inputSize: spec.inputSize, channels: spec.channels, preprocessing };
    const key = `${pipelineHash(shape)}/${classNames.join(',')}/${spec.seed}`;
    let prepared = this.datasets.get(key);
    if (!prepared) {
      prepared = (async () => {
        const loaded = await loadLabeledDataset({
          dir: this.config.data.dir,
          labelsCsv: this.config.data.labels,
          ...shape,
          classNames,
          cacheDir: join(this.config.stateDir, 'tensor-cache'),
          ...(this.events.onDataProgress ? { onProgress: this.events.onDataProgress } : {}),
        });
        for (const rejected of loaded.rejected) {
          this.log.warn({ file: rejected.file, reason: rejected.reason }, `skipped: ${rejected.message}`);
        }
        const split = splitTrainValidation(loaded.images, this.config.data.validationFraction, spec.seed);
        this.log.info(
          {
            train: split.train.count,
            validation: split.validation.count,
            rejected: loaded.rejected.length,
            classCounts: loaded.classCounts,
            cachedTensors: loaded.cache.hits,
          },
          'dataset ready',
        );
        return {
          ...split,
          rejected: loaded.rejected.length,
          contents: { files: loaded.files, classCounts: loaded.classCounts, rejected: loaded.rejected },
        };
      })();
      prepared.catch(() => this.datasets.delete(key));
      this.datasets.set(key, prepared);
    }
    return prepared;
  }
}

/** The model spec a task names, validated (options included) by the shared registry's strict schema. */
function modelSpecOf(model: federation.ModelSpec): ModelSpec {
  return modelSpecFromMessage(model);
}

/** How much local training a round asks for: a number of optimiser steps, or else whole epochs. */
function localWork(settings: federation.TrainingSettings): Pick<TrainOptions, 'epochs' | 'steps'> {
  return settings.localSteps > 0 ? { steps: settings.localSteps } : { epochs: settings.localEpochs };
}

/** The study's augmentation, class weighting and FedProx settings, as training options. */
function studyTrainingOptions(settings: federation.TrainingSettings): Pick<TrainOptions, 'augmentation' | 'classWeights' | 'proximalMu'> {
  const weighting = settings.classWeighting;
  return {
    ...(settings.augmentation ? { augmentation: { ...settings.augmentation } } : {}),
    ...(weighting ? { classWeights: weighting.balanced ? 'balanced' : weighting.weights } : {}),
    ...(settings.proximalMu > 0 ? { proximalMu: settings.proximalMu } : {}),
  };
}

function optimizerOf(optimizer: federation.Optimizer): Optimizer {
  switch (optimizer) {
    case federation.Optimizer.OPTIMIZER_SGD:
      return 'sgd';
    case federation.Optimizer.OPTIMIZER_ADAM:
      return 'adam';
    default:
      throw new Error(`train task names optimizer ${federation.optimizerToJSON(optimizer)}, which this agent does not know; upgrade the site agent`);
  }
}

function describe(error: unknown): string {
  if (isServiceError(error)) return `${error.code}: ${error.details}`;
  return error instanceof Error ? error.message : String(error);
}
