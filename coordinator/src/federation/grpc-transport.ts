import { Server as GrpcServer, ServerCredentials } from '@grpc/grpc-js';
import type { CustomTransportStrategy } from '@nestjs/microservices';
import { HealthImplementation } from 'grpc-health-check';
import { createLogger, federation } from '@federa/shared';

export interface GrpcTransportOptions {
  host: string;
  port: number;
  credentials: ServerCredentials;
  handlers: () => federation.FederationServiceServer;
  onBound: (port: number) => void;
}

/**
 * Serves the ts-proto generated FederationService and the standard grpc.health.v1 service on a grpc-js
 * server, as a Nest microservice of the hybrid app. A custom strategy (rather than Nest's proto-loader gRPC
 * transport) keeps the handlers typed by the generated code and gives streaming calls the raw grpc-js call.
 */
export class FederationGrpcTransport implements CustomTransportStrategy {
  private readonly server = new GrpcServer({
    // Chunks are 1 MiB; headroom for framing, but no whole-model messages either way.
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    'grpc.max_send_message_length': 8 * 1024 * 1024,
    // A site needs a handful of calls at once (task stream, heartbeat, an upload or download, a report).
    'grpc.max_concurrent_streams': 32,
    // Connections are recycled daily (calls in flight get 10 minutes to finish), and one with no call at all for
    // 10 minutes is closed: a site's task stream is always a call, so only abandoned connections go.
    'grpc.max_connection_age_ms': 24 * 3600 * 1000,
    'grpc.max_connection_age_grace_ms': 10 * 60 * 1000,
    'grpc.max_connection_idle_ms': 10 * 60 * 1000,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', 'federa.v1.FederationService': 'NOT_SERVING' });
  private readonly log = createLogger('grpc');

  constructor(private readonly options: GrpcTransportOptions) {}

  listen(callback: (...optionalParams: unknown[]) => unknown): void {
    this.server.addService(federation.FederationServiceService, this.options.handlers());
    this.health.addToServer(this.server);
    this.server.bindAsync(`${this.options.host}:${this.options.port}`, this.options.credentials, (error, port) => {
      if (error) {
        callback(error);
        return;
      }
      this.health.setStatus('', 'SERVING');
      this.health.setStatus('federa.v1.FederationService', 'SERVING');
      this.log.info({ host: this.options.host, port }, 'gRPC federation service listening');
      this.options.onBound(port);
      callback();
    });
  }

  close(): Promise<void> {
    this.health.setStatus('', 'NOT_SERVING');
    return new Promise((resolve) => {
      const force = setTimeout(() => this.server.forceShutdown(), 5_000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }
}
