import { Injectable } from '@nestjs/common';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { createLogger, type federation } from '@federa/shared';

type TaskStream = ServerWritableStream<federation.StreamTasksRequest, federation.Task>;
type ConnectListener = (siteId: string) => void;

/**
 * The open task streams, one per connected site. Rounds push tasks through here; a site that reconnects
 * replaces its previous stream (the old one is ended) so a task is never delivered twice to one agent.
 */
@Injectable()
export class SiteSessions {
  private readonly streams = new Map<string, TaskStream>();
  private readonly listeners: ConnectListener[] = [];
  private readonly log = createLogger('site-sessions');

  attach(siteId: string, stream: TaskStream): void {
    const previous = this.streams.get(siteId);
    if (previous && previous !== stream) {
      this.log.info({ siteId }, 'site reconnected; closing its previous task stream');
      previous.end();
    }
    this.streams.set(siteId, stream);
    const detach = (): void => {
      if (this.streams.get(siteId) === stream) {
        this.streams.delete(siteId);
        this.log.info({ siteId }, 'site disconnected');
      }
    };
    stream.on('cancelled', detach);
    stream.on('close', detach);
    stream.on('error', detach);
    this.log.info({ siteId }, 'site connected');
    for (const listener of this.listeners) listener(siteId);
  }

  onConnected(listener: ConnectListener): void {
    this.listeners.push(listener);
  }

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

  closeAll(): void {
    for (const stream of this.streams.values()) stream.end();
    this.streams.clear();
  }
}
