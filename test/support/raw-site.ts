import { credentials, Metadata, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { contributionVector, federation, float32ToBytes, initialWeights, sha256Hex, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator, type RunningCoordinator } from '@federa/coordinator';

type Client = InstanceType<typeof federation.FederationServiceClient>;

/**
 * A bare gRPC site for tests: sends exactly the messages it is given, so tests can play both honest and
 * misbehaving sites against a real coordinator.
 */
export class RawSite {
  private readonly client: Client;

  constructor(
    grpcPort: number,
    readonly siteId: string | undefined,
    /** The agent process this double plays (see x-federa-agent-instance); none by default. */
    readonly instance?: string,
  ) {
    this.client = new federation.FederationServiceClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
  }

  metadata(): Metadata {
    const m = new Metadata();
    if (this.siteId) m.set('x-federa-site-id', this.siteId);
    if (this.instance) m.set('x-federa-agent-instance', this.instance);
    return m;
  }

  register(agentVersion = 'test'): Promise<federation.RegisterResponse> {
    return new Promise((resolve, reject) =>
      this.client.register({ agentVersion, backend: 'none', supportedEncodings: [] }, this.metadata(), (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  }

  heartbeat(): Promise<{ response?: federation.HeartbeatResponse; error?: ServiceError }> {
    return new Promise((resolve) =>
      this.client.heartbeat({}, this.metadata(), { deadline: Date.now() + 5_000 }, (error, response) => resolve(error ? { error } : { response })),
    );
  }

  /** Opens the task stream and resolves with the first task delivered on it. */
  firstTask(): Promise<federation.Task> {
    return new Promise((resolve, reject) => {
      const stream = this.client.streamTasks({}, this.metadata());
      stream.once('data', (task: federation.Task) => resolve(task));
      stream.on('error', (error: ServiceError) => {
        if (error.code !== status.CANCELLED && error.code !== status.UNAVAILABLE) reject(error);
      });
    });
  }

  /** Opens the task stream and keeps every task delivered on it, in order, for `next()`. */
  inbox(): TaskInbox {
    return new TaskInbox(this.client.streamTasks({}, this.metadata()));
  }

  /**
   * Sends raw chunk messages; resolves with the receipt or the refusal. `beforeLast`, when given, is awaited before
   * the last message goes, so a test can interleave another upload with this one.
   */
  upload(messages: federation.UpdateChunk[], beforeLast?: () => Promise<void>): Promise<{ receipt?: federation.UploadReceipt; error?: ServiceError }> {
    return new Promise((resolve) => {
      const call = this.client.uploadUpdate(this.metadata(), (error, receipt) => resolve(error ? { error } : { receipt }));
      void (async () => {
        for (const [i, m] of messages.entries()) {
          if (beforeLast && i === messages.length - 1) await beforeLast();
          call.write(m);
        }
        call.end();
      })();
    });
  }

  /** Sends the messages, then cancels the call as a site that died mid-upload would; resolves once it is cancelled. */
  uploadCancelled(messages: federation.UpdateChunk[]): Promise<void> {
    return new Promise((resolve) => {
      const call = this.client.uploadUpdate(this.metadata(), () => resolve());
      for (const m of messages) call.write(m);
      // Let the chunks reach the coordinator before the cancellation does.
      setTimeout(() => call.cancel(), 200);
    });
  }

  queryUpload(query: federation.UploadQuery): Promise<{ progress?: federation.UploadProgress; error?: ServiceError }> {
    return new Promise((resolve) => this.client.queryUpload(query, this.metadata(), (error, progress) => resolve(error ? { error } : { progress })));
  }

  /** Downloads a model artifact; resolves with its header and byte count, or the refusal. */
  download(studyId: string, round: number): Promise<{ header?: federation.ModelRef; bytes: number; error?: ServiceError }> {
    return new Promise((resolve) => {
      let header: federation.ModelRef | undefined;
      let bytes = 0;
      const stream = this.client.downloadModel({ studyId, round, offset: 0 }, this.metadata(), { deadline: Date.now() + 10_000 });
      stream.on('data', (chunk: federation.ModelChunk) => {
        if (chunk.part?.$case === 'header') header = chunk.part.value;
        else if (chunk.part?.$case === 'data') bytes += chunk.part.value.length;
      });
      stream.on('error', (error: ServiceError) => resolve({ bytes, error }));
      stream.on('end', () => resolve({ ...(header ? { header } : {}), bytes }));
    });
  }

  reportMetrics(report: federation.MetricsReport): Promise<ServiceError | null> {
    return new Promise((resolve) => this.client.reportMetrics(report, this.metadata(), (error) => resolve(error)));
  }

  reportFailure(failure: federation.RoundFailure): Promise<ServiceError | null> {
    return new Promise((resolve) => this.client.reportRoundFailure(failure, this.metadata(), (error) => resolve(error)));
  }

  reportEvaluation(report: federation.EvaluationReport): Promise<ServiceError | null> {
    return new Promise((resolve) => this.client.reportEvaluation(report, this.metadata(), (error) => resolve(error)));
  }

  reportDatasetSummary(summary: federation.DatasetSummary): Promise<ServiceError | null> {
    return new Promise((resolve) => this.client.reportDatasetSummary(summary, this.metadata(), (error) => resolve(error)));
  }

  close(): void {
    this.client.close();
  }
}

/** The tasks one open stream delivered, handed out in order; a stream error rejects whoever is waiting. */
export class TaskInbox {
  private readonly queued: federation.Task[] = [];
  private readonly waiting: Array<{ resolve: (task: federation.Task) => void; reject: (error: Error) => void }> = [];

  constructor(private readonly stream: ClientReadableStream<federation.Task>) {
    stream.on('data', (task: federation.Task) => {
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(task);
      else this.queued.push(task);
    });
    stream.on('error', (error: ServiceError) => {
      if (error.code === status.CANCELLED || error.code === status.UNAVAILABLE) return;
      for (const waiter of this.waiting.splice(0)) waiter.reject(error);
    });
  }

  next(timeoutMs = 30_000): Promise<federation.Task> {
    const task = this.queued.shift();
    if (task) return Promise.resolve(task);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (t: federation.Task) => {
          clearTimeout(timer);
          resolve(t);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      // A waiter that timed out leaves the queue, so the task that comes later is not handed to nobody.
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        reject(new Error(`no task within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.push(waiter);
    });
  }

  close(): void {
    this.stream.cancel();
  }
}

/** A header as a site sends it; one without `sha256` (and `offset`) is an upload that cannot resume. */
export function headerChunk(value: Omit<federation.UpdateHeader, 'sha256' | 'offset'> & Partial<Pick<federation.UpdateHeader, 'sha256' | 'offset'>>): federation.UpdateChunk {
  return { part: { $case: 'header', value: { sha256: '', offset: 0, baseStateSha256: '', ...value } } };
}

export function dataChunk(bytes: Uint8Array): federation.UpdateChunk {
  return { part: { $case: 'data', value: Buffer.from(bytes) } };
}

export function trailerChunk(bytes: Uint8Array): federation.UpdateChunk {
  return { part: { $case: 'trailer', value: { sha256: sha256Hex(bytes) } } };
}

/**
 * A site's plaintext update as the agent forms it: every weight moved by `shift` from the initial model, times
 * `weight`, then the weight and the contribution slots of the round's cohort (1 in the site's own).
 */
export function plainUpdate(spec: ModelSpec, cohort: readonly string[], siteId: string, shift: number, weight: number): Uint8Array {
  const base = initialWeights(spec);
  return float32ToBytes(contributionVector(base, base.map((w) => w + shift), weight, cohort, siteId));
}

/** Header, one data chunk and a matching trailer: a well-formed upload of `bytes`. */
export function wholeUpload(header: Parameters<typeof headerChunk>[0], bytes: Uint8Array): federation.UpdateChunk[] {
  return [headerChunk(header), dataChunk(bytes), trailerChunk(bytes)];
}

/** Something that serves the REST API and can mint tokens: a coordinator running in this process. */
export interface RestTarget {
  httpPort: number;
  issueToken(request: { name: string; role: 'admin' | 'researcher' | 'auditor' }): Promise<{ token: string }>;
}

const tokens = new WeakMap<RestTarget, Map<string, Promise<string>>>();
let issued = 0;

/** A token of `role` for this coordinator, issued once and reused (as a CLI or dashboard would keep one). */
export function tokenFor(target: RestTarget, role: 'admin' | 'researcher' | 'auditor' = 'researcher'): Promise<string> {
  let byRole = tokens.get(target);
  if (!byRole) tokens.set(target, (byRole = new Map()));
  let token = byRole.get(role);
  if (!token) {
    // Names are unique among live tokens: two coordinators on one database each get their own.
    token = target.issueToken({ name: `test ${role} ${++issued}`, role }).then((t) => t.token);
    byRole.set(role, token);
  }
  return token;
}

/** A REST call with a researcher's token (or `role`'s). */
export async function rest(
  target: RestTarget,
  method: string,
  path: string,
  body?: unknown,
  role: 'admin' | 'researcher' | 'auditor' = 'researcher',
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${target.httpPort}/api/v1${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await tokenFor(target, role)}` },
    body: body === undefined ? null : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

export async function fetchModel(target: RestTarget, studyId: string, round: number): Promise<Float32Array> {
  const response = await fetch(`http://127.0.0.1:${target.httpPort}/api/v1/studies/${studyId}/models/${round}`, {
    headers: { authorization: `Bearer ${await tokenFor(target)}` },
  });
  if (!response.ok) throw new Error(`model ${round}: ${response.status} ${await response.text()}`);
  return new Float32Array(await response.arrayBuffer());
}

/** A small, fast study definition for tests; `overrides` sets what a test is about. */
export function studyBody(model: ModelSpec, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'test study',
    model,
    classNames: ['normal', 'lesion'],
    rounds: 1,
    minSites: 2,
    localEpochs: 1,
    batchSize: 4,
    learningRate: 0.01,
    ...overrides,
  };
}

/**
 * A coordinator in this process (insecure: a raw site is who it says) with `siteIds` registered and their task
 * streams open; everything started is stopped by `cleanup`, last first.
 */
export async function coordinatorWithRawSites(
  config: Record<string, unknown>,
  siteIds: string[],
  cleanup: Array<() => Promise<void> | void>,
): Promise<{ coordinator: RunningCoordinator; sites: RawSite[]; inboxes: TaskInbox[] }> {
  const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, ...config }));
  cleanup.push(() => coordinator.close());
  const sites = siteIds.map((id) => new RawSite(coordinator.grpcPort, id));
  for (const site of sites) await site.register();
  const inboxes = sites.map((site) => site.inbox());
  cleanup.push(() => inboxes.forEach((inbox) => inbox.close()), () => sites.forEach((site) => site.close()));
  for (const started = Date.now(); coordinator.connectedSites().join() !== [...siteIds].sort().join(); ) {
    if (Date.now() - started > 10_000) throw new Error(`sites ${siteIds.join(', ')} did not connect; connected: ${coordinator.connectedSites().join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { coordinator, sites, inboxes };
}
