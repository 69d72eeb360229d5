import type { Logger } from '@federa/shared';
import type { StudyLocks } from './study-locks.js';

/**
 * The background work of the round lifecycle: steps run under a study's lock and retried with backoff while they
 * fail, and named timers (deadlines, reconnection grace, aggregation retries) that are all cancelled at shutdown.
 */
export class RoundSteps {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly locks: StudyLocks,
    private readonly log: Logger,
  ) {}

  get shuttingDown(): boolean {
    return this.stopped;
  }

  /**
   * Runs a step (under the study's lock when it has one) and, while it fails, runs it again with backoff (1 s
   * doubling to a minute) until it succeeds or the coordinator stops: a database that is briefly away must not
   * leave a round waiting for its deadline, or a site without its tasks. Each step re-reads what it needs, so
   * running it again is safe.
   */
  run(what: string, studyId: string | null, step: () => Promise<void>, attempt = 0): void {
    if (this.stopped) return;
    const run = studyId ? () => this.locks.run(studyId, step) : step;
    run().catch((error: unknown) => {
      if (this.stopped) return;
      const delayMs = Math.min(60_000, 1_000 * 2 ** attempt);
      this.log.error({ err: error, what, ...(studyId ? { studyId } : {}), attempt, retryInMs: delayMs }, 'background step failed; trying again');
      const timer = setTimeout(() => {
        this.retryTimers.delete(timer);
        this.run(what, studyId, step, attempt + 1);
      }, delayMs);
      timer.unref();
      this.retryTimers.add(timer);
    });
  }

  /** Calls `fire` after `delayMs` under the name `key`, replacing a timer of that name. */
  schedule(key: string, delayMs: number, fire: () => void): void {
    if (this.stopped) return;
    this.cancel(key);
    const timer = setTimeout(
      () => {
        this.timers.delete(key);
        fire();
      },
      // setTimeout takes at most 2^31-1 ms; a longer wait is re-armed at start-up anyway.
      Math.max(0, Math.min(delayMs, 2_147_000_000)),
    );
    timer.unref();
    this.timers.set(key, timer);
  }

  cancel(key: string): void {
    const timer = this.timers.get(key);
    if (timer) clearTimeout(timer);
    this.timers.delete(key);
  }

  /** Cancels every timer whose name starts with `prefix`. */
  cancelAll(prefix: string): void {
    for (const key of [...this.timers.keys()]) if (key.startsWith(prefix)) this.cancel(key);
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
  }
}
