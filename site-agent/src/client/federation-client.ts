import { createHash, randomUUID } from 'node:crypto';
import { Metadata, status as GrpcStatus, type CallOptions, type ChannelCredentials, type ClientReadableStream, type ClientWritableStream, type ServiceError } from '@grpc/grpc-js';
import { CHUNK_BYTES, chunkBytes, failpoint, federation, SHA256_HEX } from '@federa/shared';

const SITE_ID_METADATA = 'x-federa-site-id';

export interface FederationClientOptions {
  address: string;
  /** Mutual TLS from the site kit, or plaintext in the insecure development mode. */
  credentials: ChannelCredentials;
  /** Sent as metadata only in the insecure mode; under mutual TLS the certificate says who the site is. */
  declaredSiteId?: string;
  /** Name to check the coordinator's certificate against instead of the address's host. */
  serverName?: string;
  /** Deadline of every unary call, and how long a download may go without a byte; 60 s by default. */
  callTimeoutMs?: number;
  /** Size of an upload's data chunks (1 MiB by default): an interrupted upload resumes after the last whole chunk. */
  uploadChunkBytes?: number;
}

/** No model artifact is larger: 25M parameters encrypted take about 340 MB. Anything bigger is refused as it comes. */
export const MAX_MODEL_BYTES = 4 * 1024 ** 3;

/** A refusal from the coordinator, with its gRPC status name, so callers can tell "late" from "broken". */
export class CoordinatorRefusal extends Error {
  override readonly name = 'CoordinatorRefusal';
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
  get statusName(): string {
    return GrpcStatus[this.code] ?? `status ${this.code}`;
  }
}

function refusal(error: ServiceError): CoordinatorRefusal {
  return new CoordinatorRefusal(error.code, error.details || error.message);
}

/** What a site says of its update; the client adds its size, hash and resume offset. */
export type UploadHeader = Pick<federation.UpdateHeader, 'studyId' | 'round' | 'encoding' | 'vectorLength' | 'baseModelSha256'> &
  Partial<Pick<federation.UpdateHeader, 'contribution' | 'baseStateSha256'>>;

/**
 * The site's side of the FederationService, promise-shaped, with integrity checks on everything it moves. Every
 * call ends: unary calls and uploads have deadlines, a download a watchdog that cancels it when no byte came for
 * the call timeout; the long-lived task stream is watched by heartbeats (SiteAgent).
 */
export class FederationClient {
  private readonly client: federation.FederationServiceClient;
  private readonly metadata = new Metadata();
  private readonly timeoutMs: number;
  private readonly uploadChunkBytes: number;

  constructor(options: FederationClientOptions) {
    this.client = new federation.FederationServiceClient(options.address, options.credentials, {
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_permit_without_calls': 1,
      ...(options.serverName ? { 'grpc.ssl_target_name_override': options.serverName, 'grpc.default_authority': options.serverName } : {}),
    });
    if (options.declaredSiteId) this.metadata.set(SITE_ID_METADATA, options.declaredSiteId);
    // Tells this process's reconnections apart from a second agent started with the same site id.
    this.metadata.set('x-federa-agent-instance', randomUUID());
    this.timeoutMs = options.callTimeoutMs ?? 60_000;
    this.uploadChunkBytes = options.uploadChunkBytes ?? CHUNK_BYTES;
  }

  private deadline(ms = this.timeoutMs): CallOptions {
    return { deadline: Date.now() + ms };
  }

  register(request: federation.RegisterRequest): Promise<federation.RegisterResponse> {
    return new Promise((resolve, reject) => {
      this.client.register(request, this.metadata, this.deadline(), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  streamTasks(): ClientReadableStream<federation.Task> {
    return this.client.streamTasks({}, this.metadata);
  }

  /** Says this site is alive; resolves with whether the coordinator still holds its task stream. */
  heartbeat(timeoutMs = 15_000): Promise<federation.HeartbeatResponse> {
    return new Promise((resolve, reject) => {
      this.client.heartbeat({}, this.metadata, this.deadline(timeoutMs), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  /** Downloads a model artifact and checks its size and SHA-256 against what the task announced. */
  async downloadModel(ref: federation.ModelRef): Promise<Uint8Array> {
    const { header, bytes } = await this.downloadArtifact(ref.studyId, ref.round);
    if (header.sha256 !== ref.sha256 || header.kind !== ref.kind) {
      throw new Error(
        `model for study ${ref.studyId} round ${ref.round} is not the one the task announced: expected ${ref.sha256}, the coordinator serves ${header.sha256}`,
      );
    }
    return bytes;
  }

  /**
   * Downloads the artifact a round published, checked against the SHA-256 and size in its own header. Refuses, as
   * they arrive, more bytes than the header announced (or than MAX_MODEL_BYTES), and gives up when the coordinator
   * sends nothing for the call timeout.
   */
  downloadArtifact(studyId: string, round: number): Promise<{ header: federation.ModelRef; bytes: Uint8Array }> {
    const stream = this.client.downloadModel({ studyId, round, offset: 0 }, this.metadata);
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let received = 0;
      let header: federation.ModelRef | undefined;
      let failed = false;
      const fail = (error: Error): void => {
        if (failed) return;
        failed = true;
        clearTimeout(watchdog);
        stream.cancel();
        reject(error);
      };
      let watchdog = setTimeout(() => fail(stalled()), this.timeoutMs);
      const stalled = (): Error => new Error(`model download for study ${studyId} round ${round} stalled: nothing for ${this.timeoutMs / 1000} s`);
      stream.on('data', (message: federation.ModelChunk) => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => fail(stalled()), this.timeoutMs);
        const part = message.part;
        if (part?.$case === 'header') {
          header = part.value;
          if (header.sizeBytes > MAX_MODEL_BYTES) fail(new Error(`model for study ${studyId} round ${round} announces ${header.sizeBytes} bytes, more than the ${MAX_MODEL_BYTES} a site accepts`));
        } else if (part?.$case === 'data') {
          received += part.value.length;
          if (!header || received > header.sizeBytes) {
            fail(new Error(`model download for study ${studyId} round ${round} sent more bytes than its header announced`));
            return;
          }
          parts.push(part.value);
          if (parts.length === 1) {
            // Held here (and killed) by the fault-injection suite; resumes at once otherwise.
            stream.pause();
            failpoint('site.download').then(
              () => stream.resume(),
              (error: unknown) => fail(error as Error),
            );
          }
        }
      });
      stream.on('error', (error: ServiceError) => fail(isServiceError(error) ? refusal(error) : error));
      stream.on('end', () => {
        if (failed) return;
        clearTimeout(watchdog);
        if (!header) return fail(new Error(`model download for study ${studyId} round ${round} carried no header`));
        const bytes = Buffer.concat(parts, received);
        const digest = createHash('sha256').update(bytes).digest('hex');
        if (digest !== header.sha256 || bytes.byteLength !== header.sizeBytes) {
          return fail(
            new Error(
              `model for study ${studyId} round ${round} failed its integrity check: expected ${header.sha256} ` +
                `(${header.sizeBytes} bytes), received ${digest} (${bytes.byteLength} bytes)`,
            ),
          );
        }
        resolve({ header, bytes });
      });
    });
  }

  /**
   * How many bytes of this update the coordinator already holds (an earlier attempt broke off); 0 from a coordinator
   * without QueryUpload. A round that does not take this site's upload refuses the question, before any byte is sent.
   */
  async uploadOffset(header: UploadHeader, payload: Uint8Array): Promise<number> {
    const sha256 = createHash('sha256').update(payload).digest('hex');
    const totalBytes = payload.byteLength;
    return this.queryUpload({ studyId: header.studyId, round: header.round, sha256, totalBytes }).then(
      (progress) => (progress.receivedBytes <= totalBytes ? progress.receivedBytes : 0),
      (error: unknown) => {
        if (error instanceof CoordinatorRefusal && error.code === GrpcStatus.UNIMPLEMENTED) return 0;
        throw error;
      },
    );
  }

  /**
   * Streams an update (header, 1 MiB data chunks, a trailer carrying the SHA-256 of the data), resuming from the
   * bytes the coordinator already holds of it: the header declares the update's SHA-256 and only the rest after
   * `offset` (from `uploadOffset`, asked here when not given) is sent. Chunks are written as the transport drains
   * them, so the update is never copied into gRPC's buffers whole. The deadline allows the call timeout plus a
   * second per MiB.
   */
  async uploadUpdate(header: UploadHeader, payload: Uint8Array, knownOffset?: number): Promise<federation.UploadReceipt & { resumedFrom: number }> {
    const sha256 = createHash('sha256').update(payload).digest('hex');
    const totalBytes = payload.byteLength;
    const offset = knownOffset ?? (await this.uploadOffset(header, payload));
    const receipt = await new Promise<federation.UploadReceipt>((resolve, reject) => {
      const options = this.deadline(this.timeoutMs + Math.ceil((totalBytes - offset) / 1024 / 1024) * 1000);
      const call = this.client.uploadUpdate(this.metadata, options, (error, received) => {
        if (error) reject(refusal(error));
        else if (received.sha256 !== sha256 || !SHA256_HEX.test(received.sha256)) {
          reject(new Error(`coordinator receipt hash ${received.sha256} does not match the sent update ${sha256}`));
        } else resolve(received);
      });
      const chunkSize = this.uploadChunkBytes;
      const messages = async function* (): AsyncGenerator<federation.UpdateChunk> {
        yield { part: { $case: 'header', value: { baseStateSha256: '', ...header, totalBytes, sha256, offset } } };
        let first = true;
        for (const chunk of chunkBytes(payload.subarray(offset), chunkSize)) {
          yield { part: { $case: 'data', value: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) } };
          if (first) await failpoint('site.upload');
          first = false;
        }
        yield { part: { $case: 'trailer', value: { sha256 } } };
      };
      writeDrained(call, messages()).then(
        () => call.end(),
        // The call failed while writing: its callback has the status.
        () => undefined,
      );
    });
    return { ...receipt, resumedFrom: offset };
  }

  queryUpload(query: federation.UploadQuery): Promise<federation.UploadProgress> {
    return new Promise((resolve, reject) => {
      this.client.queryUpload(query, this.metadata, this.deadline(), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  reportMetrics(report: federation.MetricsReport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportMetrics(report, this.metadata, this.deadline(), (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportRoundFailure(failure: federation.RoundFailure): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportRoundFailure(failure, this.metadata, this.deadline(), (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportEvaluation(report: federation.EvaluationReport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportEvaluation(report, this.metadata, this.deadline(), (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportStatistics(report: federation.StatisticsReport): Promise<federation.StatisticsAck> {
    return new Promise((resolve, reject) => {
      this.client.reportStatistics(report, this.metadata, this.deadline(), (error, ack) => (error ? reject(refusal(error)) : resolve(ack)));
    });
  }

  reportDatasetSummary(summary: federation.DatasetSummary): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportDatasetSummary(summary, this.metadata, this.deadline(), (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportRefusal(message: federation.Refusal): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportRefusal(message, this.metadata, this.deadline(), (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  submitKeyShare(submission: federation.KeyShareSubmission): Promise<federation.KeyEpochAck> {
    return new Promise((resolve, reject) => {
      this.client.submitKeyShare(submission, this.metadata, this.deadline(), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  submitEnvelopes(submission: federation.EnvelopeSubmission): Promise<federation.KeyEpochAck> {
    return new Promise((resolve, reject) => {
      this.client.submitEnvelopes(submission, this.metadata, this.deadline(), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  getKeyEpoch(request: federation.KeyEpochRequest): Promise<federation.KeyEpochState> {
    return new Promise((resolve, reject) => {
      this.client.getKeyEpoch(request, this.metadata, this.deadline(), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  submitKeySwitchShare(submission: federation.KeySwitchShareSubmission): Promise<federation.KeyEpochAck> {
    return new Promise((resolve, reject) => {
      this.client.submitKeySwitchShare(submission, this.metadata, this.deadline(), (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  /** The c1 part of a round's encrypted sum, checked against the SHA-256 the key-switch task names. */
  async downloadSum(studyId: string, round: number, expectedSha256: string): Promise<Uint8Array> {
    const what = `the sum of round ${round} of study ${studyId}`;
    const stream = this.client.downloadSum({ studyId, round, offset: 0 }, this.metadata, this.deadline(this.timeoutMs * 5));
    const bytes = await collectSwitchPart(stream, what, MAX_MODEL_BYTES, (header) => (header.sha256 !== expectedSha256 ? `${what} is ${header.sha256}, the task named ${expectedSha256}` : null));
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest !== expectedSha256) throw new Error(`${what} failed its integrity check: received ${digest}, expected ${expectedSha256}`);
    return bytes;
  }

  /**
   * The c1 part of an update a switching round lists (DownloadUpdateC1), refused past `maxBytes` (a part's exact
   * size) as it arrives. Its SHA-256 is the caller's to check, against the c1Sha256 the contributor signed.
   */
  downloadUpdateC1(studyId: string, round: number, siteId: string, maxBytes: number): Promise<Uint8Array> {
    const what = `the c1 part of ${siteId}'s update in round ${round} of study ${studyId}`;
    const stream = this.client.downloadUpdateC1({ studyId, round, siteId, offset: 0 }, this.metadata, this.deadline(this.timeoutMs * 5));
    return collectSwitchPart(stream, what, maxBytes, () => null);
  }

  /** The studies the coordinator offers this site, each with its canonical definition and hash. */
  listStudies(timeoutMs = 15_000): Promise<federation.OfferedStudy[]> {
    return new Promise((resolve, reject) => {
      this.client.listStudies({}, this.metadata, this.deadline(timeoutMs), (error, response) => (error ? reject(refusal(error)) : resolve(response.studies)));
    });
  }

  close(): void {
    this.client.close();
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && 'details' in error;
}

/**
 * The bytes of a DownloadSum or DownloadUpdateC1 stream: a header, then data up to its size. More than the header
 * announced, or than `maxBytes`, fails as it arrives; `refuseHeader` says why a header is not the one expected.
 */
function collectSwitchPart(
  stream: ClientReadableStream<federation.SumChunk>,
  what: string,
  maxBytes: number,
  refuseHeader: (header: federation.SumHeader) => string | null,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let header: federation.SumHeader | undefined;
    let received = 0;
    let failed = false;
    const fail = (error: Error): void => {
      if (failed) return;
      failed = true;
      stream.cancel();
      reject(error);
    };
    stream.on('data', (message: federation.SumChunk) => {
      const part = message.part;
      if (part?.$case === 'header') {
        header = part.value;
        const refused = refuseHeader(header);
        if (refused) fail(new Error(refused));
        else if (header.sizeBytes > maxBytes) fail(new Error(`${what} announces ${header.sizeBytes} bytes, more than the ${maxBytes} expected`));
      } else if (part?.$case === 'data') {
        received += part.value.length;
        if (!header || received > header.sizeBytes) return fail(new Error(`the download of ${what} sent more bytes than its header announced`));
        parts.push(part.value);
      }
    });
    stream.on('error', (error: ServiceError) => fail(isServiceError(error) ? refusal(error) : error));
    stream.on('end', () => {
      if (failed) return;
      if (!header) return fail(new Error(`the download of ${what} carried no header`));
      if (received !== header.sizeBytes) return fail(new Error(`the download of ${what} ended after ${received} of the ${header.sizeBytes} bytes its header announced`));
      const bytes = Buffer.concat(parts, received);
      // A plain Uint8Array view, not a second copy.
      resolve(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    });
  });
}

/** Writes each message as the stream takes it (waits for 'drain' when its buffer is full). */
async function writeDrained<T>(call: ClientWritableStream<T>, messages: AsyncIterable<T>): Promise<void> {
  for await (const message of messages) {
    if (!call.write(message)) {
      await new Promise<void>((resolve, reject) => {
        const closed = (): void => done(new Error('the upload call closed'));
        const done = (error?: Error): void => {
          call.off('drain', done);
          call.off('error', done);
          call.off('close', closed);
          if (error) reject(error);
          else resolve();
        };
        call.on('drain', done);
        call.on('error', done);
        call.on('close', closed);
      });
    }
  }
}
