import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The task the agent is working on now. */
export interface CurrentTask {
  studyId: string;
  round: number;
  task: 'train' | 'evaluate' | 'keySwitch';
}

/** GET /health's answer. */
export interface StatusView {
  status: 'ok';
  siteId: string;
  /** Registered and holding the coordinator's task stream. */
  connected: boolean;
  /** The last heartbeat the coordinator answered (ISO 8601), null before the first. */
  lastHeartbeatAt: string | null;
  current: CurrentTask | null;
}

/** What the status server serves; AgentStatus in the agent, a fake in tests. */
export interface StatusSource {
  view(): StatusView;
  metrics(): Promise<{ contentType: string; body: string }>;
}

/**
 * What the site agent is doing, for its status endpoint: connection, heartbeats and the current task, plus Prometheus
 * metrics in a registry of its own (several agents in one process, as in tests and the simulator, do not clash).
 * Labels are bounded (refusal reasons), never study ids. Recording costs a few counters, with or without a server.
 */
export class AgentStatus implements StatusSource {
  readonly registry = new Registry();
  private connectedNow = false;
  private lastHeartbeat: number | null = null;
  private currentTask: CurrentTask | null = null;

  private readonly trainedRounds = new Counter({ name: 'federa_site_rounds_trained_total', help: 'Rounds this site trained.', registers: [this.registry] });
  private readonly updates = new Counter({ name: 'federa_site_updates_sent_total', help: 'Updates the coordinator acknowledged.', registers: [this.registry] });
  private readonly bytes = new Counter({ name: 'federa_site_update_bytes_sent_total', help: 'Bytes of acknowledged updates.', registers: [this.registry] });
  private readonly refusals = new Counter({
    name: 'federa_site_refusals_total',
    help: "Tasks this site's policy refused, by reason.",
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  private readonly training = new Histogram({
    name: 'federa_site_training_seconds',
    help: 'Local training time per round.',
    // From a small test model (sub-second) to hours on a large CPU-only study.
    buckets: [0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600],
    registers: [this.registry],
  });

  constructor(private readonly siteId: string) {
    collectDefaultMetrics({ register: this.registry });
    const isConnected = (): boolean => this.connectedNow;
    new Gauge({
      name: 'federa_site_connected',
      help: '1 while the agent holds the coordinator\'s task stream, else 0.',
      registers: [this.registry],
      collect() {
        this.set(isConnected() ? 1 : 0);
      },
    });
  }

  connected(on: boolean): void {
    this.connectedNow = on;
  }

  heartbeat(at = Date.now()): void {
    this.lastHeartbeat = at;
  }

  taskStarted(task: CurrentTask): void {
    this.currentTask = task;
  }

  taskEnded(): void {
    this.currentTask = null;
  }

  trained(seconds: number): void {
    this.trainedRounds.inc();
    if (Number.isFinite(seconds) && seconds >= 0) this.training.observe(seconds);
  }

  updateSent(bytes: number): void {
    this.updates.inc();
    if (bytes > 0) this.bytes.inc(bytes);
  }

  /** `reason`: the refusal reason's protobuf name (REFUSAL_REASON_NOT_APPROVED), kept as `not_approved`. */
  refused(reason: string): void {
    this.refusals.inc({ reason: reason.replace(/^REFUSAL_REASON_/, '').toLowerCase() });
  }

  view(): StatusView {
    return {
      status: 'ok',
      siteId: this.siteId,
      connected: this.connectedNow,
      lastHeartbeatAt: this.lastHeartbeat === null ? null : new Date(this.lastHeartbeat).toISOString(),
      current: this.currentTask ? { ...this.currentTask } : null,
    };
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
