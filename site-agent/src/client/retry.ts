import { setTimeout as sleep } from 'node:timers/promises';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { createLogger } from '@federa/shared';
import { CoordinatorRefusal } from './federation-client.js';

/** Statuses that say nothing about the message itself: the same call may be made again. */
const RETRYABLE = new Set<number>([GrpcStatus.UNAVAILABLE, GrpcStatus.INTERNAL, GrpcStatus.RESOURCE_EXHAUSTED, GrpcStatus.DEADLINE_EXCEEDED]);

export interface RetryTiming {
  /** How long a call is retried when the caller names no end (an upload's end is its round's deadline). */
  windowMs: number;
  firstWaitMs: number;
  maxWaitMs: number;
}

export const DEFAULT_RETRY: RetryTiming = { windowMs: 10 * 60_000, firstWaitMs: 1_000, maxWaitMs: 30_000 };

/**
 * Makes a call again while the coordinator answers UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED
 * (it restarts, its database is briefly away, it is busy): backoff with jitter from `firstWaitMs` doubling to
 * `maxWaitMs`, until the call's end. Every other answer is final. `stop()` ends every wait at once (the agent is
 * stopping): the call fails with the coordinator's last answer.
 */
export class CoordinatorRetry {
  private readonly log = createLogger('retry');
  private readonly stopping = new AbortController();

  constructor(readonly timing: RetryTiming = DEFAULT_RETRY) {}

  stop(): void {
    this.stopping.abort();
  }

  async call<T>(what: string, attempt: () => Promise<T>, until = Date.now() + this.timing.windowMs): Promise<T> {
    for (let tries = 0; ; tries++) {
      try {
        return await attempt();
      } catch (error) {
        const retryable = error instanceof CoordinatorRefusal && RETRYABLE.has(error.code);
        const wait = Math.min(this.timing.maxWaitMs, this.timing.firstWaitMs * 2 ** tries) * (0.75 + Math.random() * 0.5);
        if (!retryable || this.stopping.signal.aborted || Date.now() + wait > until) throw error;
        this.log.warn({ what, status: error.statusName, reason: error.message, retryInMs: Math.round(wait) }, 'the coordinator could not take it now; trying again');
        const stopped = await sleep(wait, false, { signal: this.stopping.signal }).catch(() => true);
        if (stopped) throw error;
      }
    }
  }
}
