import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentials, status as GrpcStatus, type ClientReadableStream } from '@grpc/grpc-js';
import {
  ckksParametersOf,
  contributionTagKey,
  createLogger,
  failpoint,
  federation,
  float32ToBytes,
  parameterCount,
  studyDefinitionSchema,
  tagVector,
  type CkksWorkerPool,
  type SiteKit,
} from '@federa/shared';
import { CoordinatorRetry, FederationClient } from '../../client/index.js';

const HEARTBEAT_MS = 15_000;
const RECONNECT_MS = 2_000;

/** What a simulated site reports about each round it answered. */
export interface SimulatedUpload {
  siteId: string;
  studyId: string;
  round: number;
  bytes: number;
  /** Bytes the coordinator already held from an interrupted attempt (the upload resumed after them). */
  resumedFrom: number;
  encryptSeconds: number;
  uploadSeconds: number;
}

export interface SimulatedSiteOptions {
  /** host:port of the coordinator's gRPC listener. */
  address: string;
  /** Name to check the coordinator's certificate against, when the address is not one of its names. */
  serverName?: string;
  /** Encrypts on all cores; one pool for all the sites of a process. */
  pool: CkksWorkerPool;
  onUpload?: (upload: SimulatedUpload) => void;
  /** Keeps every update sent, as `<dir>/<site>/<study>-<round>-<sha256>.bin`: what a check of the sums needs. */
  keepUpdatesDir?: string;
  onError?: (siteId: string, error: Error) => void;
}

/**
 * A site without data or training, for driving a coordinator at scale: it connects like the agent does (mutual TLS
 * with its kit, registration, task stream, heartbeats), and answers each train task with a synthetic update of the
 * study's size, laid out, tagged and CKKS-encrypted exactly as the agent's (plaintext when the study asks for it).
 * Its values are small and deterministic per site and round: what the coordinator does with them is measured, not
 * what they are. Evaluation tasks are left unanswered (evaluation is reported, never a gate).
 */
export class SimulatedSite {
  private readonly secretKey: Uint8Array;
  private readonly log;
  private readonly client: FederationClient;
  private readonly retry = new CoordinatorRetry();
  private readonly tagKey: Uint8Array;
  private readonly valuesPerCiphertext: number;
  private stream: ClientReadableStream<federation.Task> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  private work: Promise<void> = Promise.resolve();
  connected = false;

  constructor(
    private readonly kit: SiteKit,
    private readonly options: SimulatedSiteOptions,
  ) {
    this.log = createLogger('sim-site').child({ siteId: kit.siteId });
    this.client = new FederationClient({
      address: options.address,
      credentials: credentials.createSsl(Buffer.from(kit.caPem), Buffer.from(kit.privateKeyPem), Buffer.from(kit.certificatePem)),
      ...(options.serverName ? { serverName: options.serverName } : {}),
    });
    // Simulated sites send single-key updates: they need a consortium provisioned with --shared-key.
    if (!kit.ckksSecretKey) throw new Error(`the kit of ${kit.siteId} has no shared CKKS key: federa-sim sends single-key (aggregation: ckks) updates; provision with --shared-key`);
    this.secretKey = kit.ckksSecretKey;
    this.tagKey = contributionTagKey(this.secretKey);
    this.valuesPerCiphertext = ckksParametersOf(this.secretKey).polyModulusDegree;
  }

  get siteId(): string {
    return this.kit.siteId;
  }

  /** Connects (and reconnects, until stopped). Resolves once the first registration went through. */
  async start(): Promise<void> {
    await this.retry.call('registration', () =>
      this.client.register({
        agentVersion: 'federa-sim',
        backend: 'synthetic',
        supportedEncodings: [federation.UpdateEncoding.UPDATE_ENCODING_CKKS, federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32],
      }),
    );
    this.openStream();
    this.heartbeat = setInterval(() => {
      this.client.heartbeat().then(
        (answer) => {
          if (!answer.streamAttached && !this.stopped) this.reopen();
        },
        () => this.reopen(),
      );
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.retry.stop();
    clearInterval(this.heartbeat);
    this.stream?.cancel();
    await this.work.catch(() => undefined);
    this.client.close();
  }

  private openStream(): void {
    if (this.stopped) return;
    const stream = this.client.streamTasks();
    this.stream = stream;
    this.connected = true;
    stream.on('data', (task: federation.Task) => {
      // One task at a time, in order, as the agent does.
      this.work = this.work.then(() => this.handle(task)).catch((error: unknown) => this.options.onError?.(this.siteId, error as Error));
    });
    stream.on('error', (error: { code?: number; message: string }) => {
      if (this.stopped || error.code === GrpcStatus.CANCELLED) return;
      this.log.warn({ reason: error.message }, 'task stream ended; reconnecting');
      this.reopen();
    });
  }

  private reopen(): void {
    if (this.stopped || !this.connected) return;
    this.connected = false;
    this.stream?.cancel();
    setTimeout(() => {
      this.client
        .register({ agentVersion: 'federa-sim', backend: 'synthetic', supportedEncodings: [federation.UpdateEncoding.UPDATE_ENCODING_CKKS, federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32] })
        .then(
          () => this.openStream(),
          () => {
            this.connected = true;
            this.reopen();
          },
        );
    }, RECONNECT_MS).unref();
  }

  private async handle(task: federation.Task): Promise<void> {
    if (task.kind?.$case !== 'train') return;
    const train = task.kind.value;
    // The agent starts a round from the global model it names: fetched (and checked) like the agent does.
    if (train.baseModel) await this.retry.call('model download', () => this.client.downloadModel(train.baseModel!), deadlineOf(train));
    await failpoint('site.train');
    const def = studyDefinitionSchema.parse(JSON.parse(train.studyDefinitionJson));
    const parameters = parameterCount(def.model);
    const encrypted = train.encoding === federation.UpdateEncoding.UPDATE_ENCODING_CKKS;
    const began = performance.now();
    // The layout the agent sends: update x weight, the weight, then one contribution slot per cohort member.
    const vector = new Float32Array(parameters + 1 + train.cohort.length);
    const weight = 100;
    const seed = hashOf(`${this.siteId}/${train.studyId}/${train.round}`);
    for (let i = 0; i < parameters; i++) vector[i] = (((seed + i * 2654435761) >>> 0) / 2 ** 32 - 0.5) * 1e-3 * weight;
    vector[parameters] = weight;
    vector[parameters + 1 + train.cohort.indexOf(this.siteId)] = 1;
    let payload = float32ToBytes(vector);
    let vectorLength = vector.length;
    if (encrypted) {
      // Every ciphertext ends with this site's contribution tags, as the agent's do.
      const tagged = tagVector(vector, this.valuesPerCiphertext, this.tagKey, { studyId: train.studyId, round: train.round }, this.siteId);
      vectorLength = tagged.length;
      payload = await this.options.pool.encryptVector(tagged, this.secretKey);
    }
    const encryptSeconds = (performance.now() - began) / 1000;
    const sent = performance.now();
    const header = {
      studyId: train.studyId,
      round: train.round,
      encoding: train.encoding,
      vectorLength,
      baseModelSha256: train.baseModel?.sha256 ?? '',
    };
    if (this.options.keepUpdatesDir) await keepUpdate(this.options.keepUpdatesDir, this.siteId, train, payload);
    const receipt = await this.retry.call('update', () => this.client.uploadUpdate(header, payload), deadlineOf(train));
    this.options.onUpload?.({
      siteId: this.siteId,
      studyId: train.studyId,
      round: train.round,
      bytes: payload.byteLength,
      resumedFrom: receipt.resumedFrom,
      encryptSeconds,
      uploadSeconds: (performance.now() - sent) / 1000,
    });
  }
}

function deadlineOf(train: federation.TrainTask): number | undefined {
  return train.deadlineUnixMs > 0 ? Number(train.deadlineUnixMs) : undefined;
}

async function keepUpdate(dir: string, siteId: string, train: federation.TrainTask, payload: Uint8Array): Promise<void> {
  const sha256 = createHash('sha256').update(payload).digest('hex');
  await mkdir(join(dir, siteId), { recursive: true });
  await writeFile(join(dir, siteId, `${train.studyId}-${train.round}-${sha256}.bin`), payload);
}

/** FNV-1a: a per-site, per-round seed for the synthetic values. */
function hashOf(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
