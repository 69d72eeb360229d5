import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { createLogger, type federation } from '@federa/shared';
import { COORDINATOR_CONFIG } from '../app/tokens.js';
import { FederationError } from '../federation/federation-error.js';
import type { CoordinatorConfig } from '../config/index.js';

type TaskStream = ServerWritableStream<federation.StreamTasksRequest, federation.Task>;
type SiteListener = (siteId: string) => void;

/**
 * The open task streams, one per connected site, and when each site was last heard from. Rounds push tasks through
 * here. A site that reconnects replaces its previous stream (the old one is ended) so a task is never delivered
 * twice to one agent. A site counts as connected while its stream is open and it keeps sending heartbeats; one that
 * stops (a process frozen, a network gone quiet without closing the connection) is marked away after
 * `siteAwaySeconds`: its stream is ended and it is not assigned to new rounds.
 */
@Injectable()
export class SiteSessions implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly streams = new Map<string, TaskStream>();
  /** Which agent process holds each stream (its instance id), so a second agent with the same site id is refused. */
  private readonly instances = new Map<string, string>();
  private readonly lastSeen = new Map<string, number>();
  private readonly connectListeners: SiteListener[] = [];
  private readonly disconnectListeners: SiteListener[] = [];
  private readonly log = createLogger('site-sessions');
  private sweeper: NodeJS.Timeout | undefined;

  constructor(@Inject(COORDINATOR_CONFIG) private readonly config: Pick<CoordinatorConfig, 'siteAwaySeconds'>) {}

  onApplicationBootstrap(): void {
    this.sweeper = setInterval(() => this.sweep(), Math.max(1_000, (this.config.siteAwaySeconds * 1000) / 3));
    this.sweeper.unref();
  }

  onApplicationShutdown(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /**
   * Attaches a site's task stream. The same agent reconnecting replaces its previous stream; another agent process
   * with the same site id is refused while the first one is alive (they would knock each other off forever).
   */
  attach(siteId: string, stream: TaskStream, instance: string): void {
    const previous = this.streams.get(siteId);
    const previousInstance = this.instances.get(siteId);
    if (previous && previous !== stream && previousInstance !== instance && this.alive(siteId)) {
      throw new FederationError(
        GrpcStatus.ALREADY_EXISTS,
        `site ${siteId} is already connected from another agent (last heard from ${this.lastSeenAt(siteId)?.toISOString()}); ` +
          `stop that agent first, or wait ${this.config.siteAwaySeconds} s after it stopped`,
      );
    }
    if (previous && previous !== stream) {
      this.log.info({ siteId }, 'site reconnected; closing its previous task stream');
      previous.end();
    }
    this.streams.set(siteId, stream);
    this.instances.set(siteId, instance);
    this.lastSeen.set(siteId, Date.now());
    const detach = (): void => {
      if (this.streams.get(siteId) === stream) {
        this.streams.delete(siteId);
        this.instances.delete(siteId);
        this.log.info({ siteId }, 'site disconnected');
        for (const listener of this.disconnectListeners) listener(siteId);
      }
    };
    stream.on('cancelled', detach);
    stream.on('close', detach);
    stream.on('error', detach);
    this.log.info({ siteId }, 'site connected');
    for (const listener of this.connectListeners) listener(siteId);
  }

  /**
   * A heartbeat from one agent process: returns whether that agent's task stream is attached here. Only the agent
   * holding the stream keeps the site alive; a second agent's heartbeats do not.
   */
  touch(siteId: string, instance: string): boolean {
    const attached = this.streams.has(siteId) && this.instances.get(siteId) === instance;
    if (attached || !this.streams.has(siteId)) this.lastSeen.set(siteId, Date.now());
    return attached;
  }

  lastSeenAt(siteId: string): Date | null {
    const at = this.lastSeen.get(siteId);
    return at === undefined ? null : new Date(at);
  }

  onConnected(listener: SiteListener): void {
    this.connectListeners.push(listener);
  }

  /** Called when a site's stream goes: it closed, failed, was dropped, or the site went quiet. */
  onDisconnected(listener: SiteListener): void {
    this.disconnectListeners.push(listener);
  }

  /** Connected: its task stream is held here (a site that stopped its heartbeats has had it dropped by the sweep). */
  isConnected(siteId: string): boolean {
    return this.streams.has(siteId);
  }

  connectedSiteIds(): string[] {
    return [...this.streams.keys()].sort();
  }

  /** Returns false when the site is not connected; it gets the task replayed when it reconnects. */
  send(siteId: string, task: federation.Task): boolean {
    const stream = this.streams.get(siteId);
    if (!stream) return false;
    stream.write(task);
    return true;
  }

  /** Ends a site's stream at once with a status it reads (a revoked certificate, a site dropped). */
  drop(siteId: string, reason: string, code: GrpcStatus = GrpcStatus.PERMISSION_DENIED): void {
    const stream = this.streams.get(siteId);
    if (!stream) return;
    this.log.warn({ siteId, reason }, 'dropping the site\'s task stream');
    stream.emit('error', Object.assign(new Error(reason), { code, details: reason }));
    this.streams.delete(siteId);
    this.instances.delete(siteId);
    for (const listener of this.disconnectListeners) listener(siteId);
  }

  closeAll(): void {
    for (const stream of this.streams.values()) stream.end();
    this.streams.clear();
  }

  private alive(siteId: string): boolean {
    return Date.now() - (this.lastSeen.get(siteId) ?? 0) <= this.config.siteAwaySeconds * 1000;
  }

  private sweep(): void {
    for (const siteId of [...this.streams.keys()]) {
      if (!this.alive(siteId)) {
        this.drop(siteId, `no heartbeat for more than ${this.config.siteAwaySeconds} s: the site is marked away`, GrpcStatus.UNAVAILABLE);
      }
    }
  }
}
