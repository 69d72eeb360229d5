import { createHash } from 'node:crypto';
import { Metadata, status as GrpcStatus, type ChannelCredentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { chunkBytes, federation, SHA256_HEX } from '@federa/shared';

const SITE_ID_METADATA = 'x-federa-site-id';

export interface FederationClientOptions {
  address: string;
  /** Mutual TLS from the site kit, or plaintext in the insecure development mode. */
  credentials: ChannelCredentials;
  /** Sent as metadata only in the insecure mode; under mutual TLS the certificate says who the site is. */
  declaredSiteId?: string;
  /** Name to check the coordinator's certificate against instead of the address's host. */
  serverName?: string;
}

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

/** The site's side of the FederationService, promise-shaped, with integrity checks on everything it moves. */
export class FederationClient {
  private readonly client: federation.FederationServiceClient;
  private readonly metadata = new Metadata();

  constructor(options: FederationClientOptions) {
    this.client = new federation.FederationServiceClient(options.address, options.credentials, {
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_permit_without_calls': 1,
      ...(options.serverName ? { 'grpc.ssl_target_name_override': options.serverName, 'grpc.default_authority': options.serverName } : {}),
    });
    if (options.declaredSiteId) this.metadata.set(SITE_ID_METADATA, options.declaredSiteId);
  }

  register(request: federation.RegisterRequest): Promise<federation.RegisterResponse> {
    return new Promise((resolve, reject) => {
      this.client.register(request, this.metadata, (error, response) => (error ? reject(refusal(error)) : resolve(response)));
    });
  }

  streamTasks(): ClientReadableStream<federation.Task> {
    return this.client.streamTasks({}, this.metadata);
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

  /** Downloads the artifact a round published, checked against the SHA-256 and size in its own header. */
  async downloadArtifact(studyId: string, round: number): Promise<{ header: federation.ModelRef; bytes: Uint8Array }> {
    const stream = this.client.downloadModel({ studyId, round, offset: 0 }, this.metadata);
    const parts: Buffer[] = [];
    let header: federation.ModelRef | undefined;
    try {
      for await (const message of stream as AsyncIterable<federation.ModelChunk>) {
        const part = message.part;
        if (part?.$case === 'header') header = part.value;
        else if (part?.$case === 'data') parts.push(part.value);
      }
    } catch (error) {
      throw isServiceError(error) ? refusal(error) : error;
    }
    if (!header) throw new Error(`model download for study ${studyId} round ${round} carried no header`);
    const bytes = Buffer.concat(parts);
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest !== header.sha256 || bytes.byteLength !== header.sizeBytes) {
      throw new Error(
        `model for study ${studyId} round ${round} failed its integrity check: expected ${header.sha256} ` +
          `(${header.sizeBytes} bytes), received ${digest} (${bytes.byteLength} bytes)`,
      );
    }
    return { header, bytes };
  }

  /** Streams an update: header, 1 MiB data chunks, and a trailer carrying the SHA-256 of the data. */
  uploadUpdate(header: Omit<federation.UpdateHeader, 'totalBytes'>, payload: Uint8Array): Promise<federation.UploadReceipt> {
    const sha256 = createHash('sha256').update(payload).digest('hex');
    return new Promise((resolve, reject) => {
      const call = this.client.uploadUpdate(this.metadata, (error, receipt) => {
        if (error) reject(refusal(error));
        else if (receipt.sha256 !== sha256 || !SHA256_HEX.test(receipt.sha256)) {
          reject(new Error(`coordinator receipt hash ${receipt.sha256} does not match the sent update ${sha256}`));
        } else resolve(receipt);
      });
      call.write({ part: { $case: 'header', value: { ...header, totalBytes: payload.byteLength } } });
      for (const chunk of chunkBytes(payload)) {
        call.write({ part: { $case: 'data', value: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) } });
      }
      call.write({ part: { $case: 'trailer', value: { sha256 } } });
      call.end();
    });
  }

  reportMetrics(report: federation.MetricsReport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportMetrics(report, this.metadata, (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportRoundFailure(failure: federation.RoundFailure): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportRoundFailure(failure, this.metadata, (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportEvaluation(report: federation.EvaluationReport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportEvaluation(report, this.metadata, (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportDatasetSummary(summary: federation.DatasetSummary): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportDatasetSummary(summary, this.metadata, (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  reportRefusal(message: federation.Refusal): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportRefusal(message, this.metadata, (error) => (error ? reject(refusal(error)) : resolve()));
    });
  }

  /** The studies the coordinator offers this site, each with its canonical definition and hash. */
  listStudies(timeoutMs = 15_000): Promise<federation.OfferedStudy[]> {
    return new Promise((resolve, reject) => {
      this.client.listStudies({}, this.metadata, { deadline: Date.now() + timeoutMs }, (error, response) =>
        error ? reject(refusal(error)) : resolve(response.studies),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && 'details' in error;
}
