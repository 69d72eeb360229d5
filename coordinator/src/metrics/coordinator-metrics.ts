import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createLogger } from '@federa/shared';
import { DATABASE } from '../app/tokens.js';
import type { Database } from '../persistence/index.js';
import { SiteSessions } from '../sessions/site-sessions.js';

/** How a round ended (or began): `cancelled` is a round abandoned because its study was stopped. */
export type RoundOutcome = 'opened' | 'closed' | 'failed' | 'cancelled';
/** collect: open to close; aggregate: summing the updates; publish: recording the new model and asking for evaluation. */
export type RoundPhase = 'collect' | 'aggregate' | 'publish';

/** Every study status, so each series exists (at 0) from the first scrape rather than appearing with its first study. */
const STUDY_STATUSES = ['draft', 'running', 'paused', 'completed', 'failed', 'cancelled'] as const;

/**
 * The coordinator's Prometheus metrics, served at GET /metrics. A registry of its own (not prom-client's global one),
 * so several coordinators in one process (tests, tools) neither clash nor count each other's rounds. The rounds,
 * uploads and site reports record what happens through the small methods below; connected sites and studies by
 * status are read when Prometheus scrapes, so they are never out of step with the sessions and the database.
 *
 * Labels take bounded values only (phases, outcomes, gRPC status names, refusal codes), never ids: a label per study
 * or site would grow without end, and ids belong in the logs.
 */
@Injectable()
export class CoordinatorMetrics implements OnApplicationShutdown {
  readonly registry = new Registry();
  private readonly log = createLogger('metrics');

  private readonly rounds = new Counter({
    name: 'federa_rounds_total',
    help: 'Rounds by outcome: opened, closed (aggregated and published), failed, cancelled (study stopped).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly phases = new Histogram({
    name: 'federa_round_phase_seconds',
    help: 'Duration of round phases: collect (open to close), aggregate (summing the updates), publish (recording the model).',
    labelNames: ['phase'] as const,
    // From a fast aggregation (sub-second) to a collection that waits for sites for a day.
    buckets: [0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
    registers: [this.registry],
  });

  private readonly uploads = new Counter({
    name: 'federa_uploads_total',
    help: 'Update uploads by outcome (accepted, refused) and reason (the gRPC status of a refusal; "ok" when accepted).',
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
  });

  private readonly bytes = new Counter({
    name: 'federa_upload_bytes_received_total',
    help: 'Update bytes received from sites, as they arrive (including uploads later refused or resumed).',
    registers: [this.registry],
  });

  private readonly refusals = new Counter({
    name: 'federa_site_refusals_total',
    help: "Tasks refused by a site's policy, by task (train, evaluate, key-switch) and reason code.",
    labelNames: ['task', 'reason'] as const,
    registers: [this.registry],
  });

  private readonly failures = new Counter({
    name: 'federa_site_round_failures_total',
    help: 'Rounds a site reported it could not contribute to, by reason (diverged, no-usable-data, ...).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor(
    @Inject(SiteSessions) sessions: SiteSessions,
    @Inject(DATABASE) db: Database,
  ) {
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'federa_connected_sites',
      help: 'Sites connected now (task stream open, heartbeats on time).',
      registers: [this.registry],
      collect() {
        this.set(sessions.connectedSiteIds().length);
      },
    });
    const log = this.log;
    new Gauge({
      name: 'federa_studies',
      help: 'Studies by status, read from the database at scrape time.',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        try {
          const counts = await db.prisma.study.groupBy({ by: ['status'], _count: { _all: true } });
          for (const status of STUDY_STATUSES) this.set({ status }, 0);
          for (const row of counts) this.set({ status: row.status }, row._count._all);
        } catch (error) {
          // A database that is away must not fail the whole scrape: the series go missing, /ready says why.
          this.reset();
          log.warn({ reason: (error as Error).message.split('\n')[0] }, 'could not count studies for /metrics');
        }
      },
    });
  }

  round(outcome: RoundOutcome): void {
    this.rounds.inc({ outcome });
  }

  phase(phase: RoundPhase, seconds: number): void {
    if (Number.isFinite(seconds) && seconds >= 0) this.phases.observe({ phase }, seconds);
  }

  uploadAccepted(): void {
    this.uploads.inc({ outcome: 'accepted', reason: 'ok' });
  }

  /** `reason`: the refusal's gRPC status name (INVALID_ARGUMENT, ALREADY_EXISTS, ...), lower-cased. */
  uploadRefused(reason: string): void {
    this.uploads.inc({ outcome: 'refused', reason: reason.toLowerCase() });
  }

  bytesReceived(bytes: number): void {
    if (bytes > 0) this.bytes.inc(bytes);
  }

  siteRefused(task: 'train' | 'evaluate' | 'key-switch', reason: string): void {
    this.refusals.inc({ task, reason });
  }

  siteFailed(reason: string): void {
    this.failures.inc({ reason });
  }

  /** The text exposition format, and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  onApplicationShutdown(): void {
    this.registry.clear();
  }
}
