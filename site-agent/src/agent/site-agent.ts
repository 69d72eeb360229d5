import { setTimeout as sleep } from 'node:timers/promises';
import {
  CkksContext,
  contributionTagKey,
  createLogger,
  federation,
  ownerOnlyDir,
  studyHash,
  type Logger,
  type SiteKit,
} from '@federa/shared';
import { CoordinatorRefusal, CoordinatorRetry, FederationClient, isServiceError, type SiteTransport } from '../client/index.js';
import type { SiteConfig } from '../config/index.js';
import { ledgerPath, PrivacyLedger } from '../ledger/index.js';
import { PrivacyAccounts } from '../privacy/index.js';
import { Outbound } from '../outbound/index.js';
import { PolicyRefusalError, StudyDecisions } from '../policy/index.js';
import { AgentStatus, startStatusServer, type StatusServer } from '../status/index.js';
import { closeTrainingThreads, initBackend, type BackendInfo } from '../train/index.js';
import { GlobalModels, type KeyHolder } from './global-models.js';
import { ModelCache } from './model-cache.js';
import { NoUsableDataError, RoundWork } from './round-work.js';
import { RoundStateStore, type RoundState } from './round-state.js';
import { SiteData } from './site-data.js';
import { problemReport } from './problem-report.js';
import { TaskGate } from './task-gate.js';
import { MultipartyKeys } from '../multiparty/index.js';

export const AGENT_VERSION = '0.1.0';
/** How often a site says it is alive; the coordinator marks it away after three missed (45 s by default). */
const HEARTBEAT_MS = 15_000;
export { NoUsableDataError };

export interface SiteAgentEvents {
  /** Called after each round this site completed (uploaded and acknowledged). */
  onRoundUploaded?: (state: RoundState) => void;
  onStudyClosed?: (closed: federation.StudyClosed) => void;
  /** Progress of decoding and preprocessing the site's images (the slow part of a first round). */
  onDataProgress?: (done: number, total: number) => void;
}

/**
 * The long-running site process: registers with the coordinator, keeps a task stream open (reconnecting with
 * backoff), and hands each task to the TaskGate (definition, approval, policy) and then to RoundWork. Everything it
 * sends goes through the Outbound path: policy, ledger, send.
 */
export class SiteAgent {
  private readonly log: Logger;
  private readonly client: FederationClient;
  private readonly kit: SiteKit | undefined;
  private readonly decisions: StudyDecisions;
  private readonly gate: TaskGate;
  private ckks: Promise<KeyHolder> | undefined;
  private backend: BackendInfo | undefined;
  private outbound: Outbound | undefined;
  /** Calls the coordinator could not take (restarting, database away) are made again; stopping ends the waits. */
  private readonly retry = new CoordinatorRetry();
  private work: RoundWork | undefined;
  private models: GlobalModels | undefined;
  private multiparty: MultipartyKeys | undefined;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private currentStream: { cancel(): void } | undefined;
  /** Connection, heartbeats, current task and metrics, for the optional status endpoint (`status:` in site.yaml). */
  readonly status: AgentStatus;

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
    this.kit = transport.kit;
    this.decisions = new StudyDecisions(config.stateDir);
    this.gate = new TaskGate(this.decisions, config.policy, config.site.id);
    this.status = new AgentStatus(config.site.id);
  }

  /** Runs until `stop()`; resolves once the agent has shut down. */
  async run(): Promise<void> {
    if (this.config.policy.autoApprove) {
      this.log.warn('policy.autoApprove is ON: this site trains any study the coordinator sends, without the hospital approving it. For demos and local tests only.');
    }
    // Every update sent (and its clear vector), decrypted models and the ledger live here: owner-only.
    const loose = await ownerOnlyDir(this.config.stateDir);
    if (loose) this.log.warn({ dir: this.config.stateDir, reason: loose }, 'could not make the state folder owner-only');
    const ledger = await PrivacyLedger.open(ledgerPath(this.config.stateDir), {
      siteId: this.config.site.id,
      certificateFingerprint: this.kit?.manifest.certificate.fingerprint256 ?? null,
      agentVersion: AGENT_VERSION,
    });
    const outbound = new Outbound(this.client, ledger, this.config.policy, this.config.site.id, this.kit?.caPem ?? null, this.retry);
    const kit = this.kit;
    this.multiparty = kit
      ? new MultipartyKeys(
          this.config.stateDir,
          { siteId: this.config.site.id, caPem: kit.caPem, certificatePem: kit.certificatePem, privateKeyPem: kit.privateKeyPem },
          this.client,
          outbound,
          this.config.policy,
          this.retry,
        )
      : undefined;
    const models = new GlobalModels(this.client, new ModelCache(this.config.stateDir), () => this.keys(), this.config.policy, this.retry, this.multiparty);
    this.outbound = outbound;
    this.models = models;
    this.backend = await initBackend(this.config.training.backend);
    this.log.info({ backend: this.backend.name, detail: this.backend.detail, ledger: ledger.path }, 'training backend ready');
    this.work = new RoundWork(
      this.config,
      outbound,
      new RoundStateStore(this.config.stateDir),
      models,
      new SiteData(this.config, this.events.onDataProgress),
      this.kit ? { keys: () => this.keys(), ledger: async () => this.encryptionRecord(await this.keys()), multiparty: this.multiparty ?? null } : null,
      () => this.backend,
      new PrivacyAccounts(ledger.path),
      {
        onTrained: (state) => this.status.trained(state.trainSeconds),
        onRoundUploaded: (state) => {
          this.status.updateSent(state.receipt?.receivedBytes ?? 0);
          this.events.onRoundUploaded?.(state);
        },
      },
    );
    // Started once nothing before the loop can throw, so the loop's end always closes it.
    const statusServer = await this.startStatus();
    let attempt = 0;
    while (!this.stopped) {
      try {
        const registered = await outbound.register({
          agentVersion: AGENT_VERSION,
          backend: this.backend.name,
          // Plaintext only when the hospital's policy allows it, so the coordinator cannot switch this site to it.
          supportedEncodings: [
            ...(this.kit ? [federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY] : []),
            ...(this.kit?.ckksSecretKey ? [federation.UpdateEncoding.UPDATE_ENCODING_CKKS] : []),
            ...(this.config.policy.requireEncryption ? [] : [federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32]),
          ],
          policy: {
            requireEncryption: this.config.policy.requireEncryption,
            minParticipants: this.config.policy.minParticipants,
            maxRounds: this.config.policy.maxRounds,
            shareMetrics: this.config.policy.shareMetrics,
          },
        });
        this.log.info({ coordinatorVersion: registered.coordinatorVersion }, 'registered with the coordinator');
        attempt = 0;
        this.status.connected(true);
        await this.consumeTasks();
        this.status.connected(false);
      } catch (error) {
        this.status.connected(false);
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
    await closeTrainingThreads();
    await this.multiparty?.close();
    await statusServer?.close();
    this.client.close();
    if (this.ckks) (await this.ckks).context.dispose();
  }

  stop(): void {
    this.stopped = true;
    this.retry.stop();
    this.currentStream?.cancel();
  }

  /**
   * Holds the task stream open and heartbeats beside it. A heartbeat that fails, or that says the coordinator holds
   * no stream for this site (it went quiet without closing), ends the stream so the agent reconnects.
   */
  private consumeTasks(): Promise<void> {
    return new Promise((resolve, reject) => {
      const stream = this.client.streamTasks();
      this.currentStream = stream;
      let done = false;
      const finish = (error?: Error): void => {
        if (done) return;
        done = true;
        clearInterval(beat);
        if (error && !this.stopped) reject(error);
        else resolve();
      };
      const beat = setInterval(() => {
        this.client.heartbeat().then(
          (answer) => {
            this.status.heartbeat();
            if (answer.streamAttached || done) return;
            stream.cancel();
            finish(new Error('the coordinator no longer holds this site\'s task stream'));
          },
          (error: unknown) => {
            if (done) return;
            stream.cancel();
            finish(error instanceof Error ? error : new Error(String(error)));
          },
        );
      }, HEARTBEAT_MS);
      stream.on('data', (task: federation.Task) => {
        // One task's failure never holds up the next: each is caught and logged on its own.
        this.queue = this.queue
          .then(() => this.handleTask(task))
          .catch((error: unknown) => this.log.error({ err: error, taskId: task.taskId }, 'task failed'));
      });
      stream.on('error', (error) => finish(error));
      stream.on('end', () => finish(new Error('the coordinator closed the task stream')));
    });
  }

  private async handleTask(task: federation.Task): Promise<void> {
    const kind = task.kind;
    const work = this.work;
    if (!kind || this.stopped || !work) return;
    if (kind.$case === 'studyClosed') return this.studyClosed(kind.value);
    const value = kind.value;
    const taskKind =
      kind.$case === 'train'
        ? federation.TaskKind.TASK_KIND_TRAIN
        : kind.$case === 'keySwitch'
          ? federation.TaskKind.TASK_KIND_KEY_SWITCH
          : federation.TaskKind.TASK_KIND_EVALUATE;
    const log = this.log.child({ studyId: value.studyId, round: value.round, task: kind.$case });
    this.status.taskStarted({ studyId: value.studyId, round: value.round, task: kind.$case });
    try {
      if (kind.$case === 'train') await work.train(kind.value, await this.gate.admitTrain(kind.value));
      else if (kind.$case === 'keySwitch') {
        await this.gate.admitKeySwitch(kind.value);
        if (!this.multiparty) throw new Error('a key-switch task needs this site\'s kit (coordinator.kit in site.yaml)');
        await this.multiparty.keySwitch(kind.value);
      } else await work.evaluate(kind.value, await this.gate.admitEvaluate(kind.value));
    } catch (error) {
      await this.reportProblem(error, value, taskKind, log);
    } finally {
      this.status.taskEnded();
    }
  }

  /** Tells the coordinator why this site will not or cannot do a task, so nothing waits for it. */
  private async reportProblem(
    error: unknown,
    task: { studyId: string; round: number; studyHash: string },
    taskKind: federation.TaskKind,
    log: Logger,
  ): Promise<void> {
    const outbound = this.outbound;
    if (!outbound) return;
    const report = problemReport(error, taskKind);
    try {
      if (report.kind === 'refusal') {
        log.warn({ reason: federation.refusalReasonToJSON(report.reason) }, `refused: ${report.message}`);
        this.status.refused(federation.refusalReasonToJSON(report.reason));
        await outbound.reportRefusal({ studyId: task.studyId, round: task.round, task: taskKind, reason: report.reason, message: report.message, studyHash: task.studyHash });
      } else if (report.kind === 'failure') {
        log.error({ reason: federation.failureReasonToJSON(report.reason), err: error }, (error as Error).message);
        await outbound.reportRoundFailure({ studyId: task.studyId, round: task.round, reason: report.reason, message: report.message });
      } else if (error instanceof CoordinatorRefusal) {
        log.warn({ status: error.statusName, reason: error.message }, 'coordinator refused');
      } else {
        log.error({ err: error }, 'task failed at this site');
      }
    } catch (reportError) {
      log.warn({ reason: describe(reportError) }, 'could not tell the coordinator');
    }
  }

  private async studyClosed(closed: federation.StudyClosed): Promise<void> {
    this.log.info({ studyId: closed.studyId, outcome: federation.studyOutcomeToJSON(closed.outcome) }, closed.message);
    const def = this.gate.definitionOf(closed.studyId);
    if (closed.outcome === federation.StudyOutcome.STUDY_OUTCOME_COMPLETED && closed.finalRound > 0 && def && this.models) {
      try {
        await this.models.weights(closed.studyId, closed.finalRound, def);
        this.log.info({ studyId: closed.studyId, path: this.models.path(closed.studyId, closed.finalRound) }, 'final global model saved');
      } catch (error) {
        if (error instanceof PolicyRefusalError) {
          // A final aggregate the policy refuses (too few contributions, slots that disagree) is said to the
          // coordinator like any refused task, so it reaches the audit log; it names the final round's training.
          const log = this.log.child({ studyId: closed.studyId, round: closed.finalRound, task: 'final-model' });
          await this.reportProblem(error, { studyId: closed.studyId, round: closed.finalRound, studyHash: studyHash(def) }, federation.TaskKind.TASK_KIND_TRAIN, log);
        } else {
          this.log.error({ studyId: closed.studyId, reason: describe(error) }, 'could not fetch the final global model');
        }
      }
    }
    this.events.onStudyClosed?.(closed);
  }

  /**
   * The status endpoint, when site.yaml asks for one. One that cannot bind (port taken) is logged and left out: the
   * agent's work matters more than its status page.
   */
  private async startStatus(): Promise<StatusServer | undefined> {
    const options = this.config.status;
    if (!options) return undefined;
    try {
      return await startStatusServer(options, this.status);
    } catch (error) {
      this.log.error({ host: options.host, port: options.port, reason: describe(error) }, 'could not start the status endpoint; running without it');
      return undefined;
    }
  }

  private keys(): Promise<KeyHolder> {
    const kit = this.kit;
    if (!kit) return Promise.reject(new Error('this study encrypts its updates, which needs the site kit: set coordinator.kit in site.yaml'));
    const secretKey = kit.ckksSecretKey;
    if (!secretKey) return Promise.reject(new Error("this study uses the consortium's one shared CKKS key (aggregation: ckks), and this site's kit has none: the consortium was provisioned without `--shared-key`; ask the operator, or run the study with aggregation multiparty"));
    const holder = (this.ckks ??= CkksContext.fromKey(secretKey).then((context) => ({ context, secretKey, tagKey: contributionTagKey(secretKey) })));
    return holder;
  }

  private encryptionRecord(keys: KeyHolder): { scheme: 'ckks'; keyFingerprint: string; parameters: Record<string, unknown> } {
    return { scheme: 'ckks', keyFingerprint: this.kit?.manifest.ckks?.fingerprint ?? keys.context.fingerprint, parameters: { ...keys.context.parameters } };
  }
}

function describe(error: unknown): string {
  if (isServiceError(error)) return `${error.code}: ${error.details}`;
  return error instanceof Error ? error.message : String(error);
}
