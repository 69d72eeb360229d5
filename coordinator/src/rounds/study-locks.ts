import { Injectable } from '@nestjs/common';

/**
 * Serialises work on one study (opening, closing and aggregating rounds, accepting uploads and refusals), so a
 * late upload cannot race a round's closing. Different studies proceed in parallel.
 */
@Injectable()
export class StudyLocks {
  private readonly queues = new Map<string, Promise<unknown>>();

  /** Runs `work` after every earlier piece of work on the same study has finished. */
  run<T>(studyId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(studyId) ?? Promise.resolve();
    const result = previous.catch(() => undefined).then(work);
    const settled = result.catch(() => undefined);
    this.queues.set(studyId, settled);
    const forget = (): void => {
      if (this.queues.get(studyId) === settled) this.queues.delete(studyId);
    };
    settled.then(forget, forget);
    return result;
  }
}
