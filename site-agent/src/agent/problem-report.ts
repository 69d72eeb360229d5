import { federation, InvalidModelSpecError, PreprocessingError } from '@federa/shared';
import { CoordinatorRefusal, isServiceError } from '../client/index.js';
import { EpochClosedError } from '../multiparty/index.js';
import { PolicyRefusalError } from '../policy/index.js';
import { UnsupportedStatisticError } from '../statistics/index.js';
import { TrainingDivergedError } from '../train/index.js';
import { NoUsableDataError, UpdateOutOfRangeError } from './round-work.js';

/** What a site tells the coordinator about a task it will not or cannot do, so nothing waits for it. */
export type ProblemReport =
  | { kind: 'refusal'; reason: federation.RefusalReason; message: string }
  | { kind: 'failure'; reason: federation.FailureReason; message: string }
  /** Nothing to say: the coordinator refused or could not be reached, or the key epoch closed under the task. */
  | { kind: 'none' };

/**
 * The report for an error that ended a task. A policy refusal is reported as such for any task. A train task's
 * failure, and a key-switch task's (the member cannot compute its share: its round then runs again without it at
 * once, not at the switch's deadline), is reported with its kind; a site error's own message can carry local paths,
 * so the coordinator gets its name only.
 */
export function problemReport(error: unknown, taskKind: federation.TaskKind): ProblemReport {
  if (error instanceof PolicyRefusalError) return { kind: 'refusal', reason: error.refusal.reason, message: error.message };
  // A refusal, a transport error, or a key epoch closed under the task (its round runs again under a new one, whose
  // task follows): the coordinator already knows.
  if (error instanceof CoordinatorRefusal || isServiceError(error) || error instanceof EpochClosedError) return { kind: 'none' };
  if (taskKind === federation.TaskKind.TASK_KIND_TRAIN) {
    const message = (error as Error).message;
    if (error instanceof TrainingDivergedError || error instanceof UpdateOutOfRangeError) return { kind: 'failure', reason: federation.FailureReason.FAILURE_REASON_DIVERGED, message };
    if (error instanceof NoUsableDataError) return { kind: 'failure', reason: federation.FailureReason.FAILURE_REASON_NO_USABLE_DATA, message };
    if (error instanceof InvalidModelSpecError || error instanceof PreprocessingError || error instanceof UnsupportedStatisticError) return { kind: 'failure', reason: federation.FailureReason.FAILURE_REASON_UNSUPPORTED_TASK, message };
  }
  if (taskKind !== federation.TaskKind.TASK_KIND_TRAIN && taskKind !== federation.TaskKind.TASK_KIND_KEY_SWITCH) return { kind: 'none' };
  const what = taskKind === federation.TaskKind.TASK_KIND_KEY_SWITCH ? 'compute its key-switching share' : 'complete the round';
  const name = error instanceof Error ? error.name : typeof error;
  return { kind: 'failure', reason: federation.FailureReason.FAILURE_REASON_SITE_ERROR, message: `the site could not ${what} (${name}); its log says why` };
}
