import { describe, expect, it } from 'vitest';
import { federation } from '@federa/shared';
import { CoordinatorRefusal } from '../client/index.js';
import { EpochClosedError } from '../multiparty/index.js';
import { PolicyRefusalError } from '../policy/index.js';
import { problemReport } from './problem-report.js';
import { NoUsableDataError, UpdateOutOfRangeError } from './round-work.js';

const { TaskKind, FailureReason, RefusalReason } = federation;

describe('what a site tells the coordinator about a task it will not or cannot do', () => {
  it('reports a policy refusal as such, for any task', () => {
    const refusal = new PolicyRefusalError({ reason: RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID, message: 'not a sum of the listed updates' });
    for (const kind of [TaskKind.TASK_KIND_TRAIN, TaskKind.TASK_KIND_KEY_SWITCH, TaskKind.TASK_KIND_EVALUATE]) {
      expect(problemReport(refusal, kind)).toEqual({ kind: 'refusal', reason: RefusalReason.REFUSAL_REASON_SHARE_REQUEST_INVALID, message: 'not a sum of the listed updates' });
    }
  });

  it('reports a train task\'s failures with their kind and message', () => {
    expect(problemReport(new NoUsableDataError('no usable training images'), TaskKind.TASK_KIND_TRAIN)).toEqual({ kind: 'failure', reason: FailureReason.FAILURE_REASON_NO_USABLE_DATA, message: 'no usable training images' });
    expect(problemReport(new UpdateOutOfRangeError('a weight moved by 3'), TaskKind.TASK_KIND_TRAIN)).toEqual({ kind: 'failure', reason: FailureReason.FAILURE_REASON_DIVERGED, message: 'a weight moved by 3' });
  });

  it('reports a site error of a train or key-switch task by its name only (its message may hold local paths)', () => {
    const error = new Error('ENOENT: /var/lib/federa/state/multiparty/epochs/x.json');
    expect(problemReport(error, TaskKind.TASK_KIND_TRAIN)).toEqual({ kind: 'failure', reason: FailureReason.FAILURE_REASON_SITE_ERROR, message: 'the site could not complete the round (Error); its log says why' });
    // A member that cannot compute its key-switching share says so: its round then runs again without it at once.
    expect(problemReport(error, TaskKind.TASK_KIND_KEY_SWITCH)).toEqual({
      kind: 'failure',
      reason: FailureReason.FAILURE_REASON_SITE_ERROR,
      message: 'the site could not compute its key-switching share (Error); its log says why',
    });
    expect(JSON.stringify(problemReport(error, TaskKind.TASK_KIND_KEY_SWITCH))).not.toContain('/var/lib');
  });

  it('says nothing of what the coordinator already knows, or of an evaluation that failed', () => {
    expect(problemReport(new CoordinatorRefusal(9, 'round 1 is closed'), TaskKind.TASK_KIND_KEY_SWITCH)).toEqual({ kind: 'none' });
    expect(problemReport({ code: 14, details: 'unavailable', metadata: {} }, TaskKind.TASK_KIND_TRAIN)).toEqual({ kind: 'none' });
    expect(problemReport(new EpochClosedError('key epoch 1 was closed'), TaskKind.TASK_KIND_KEY_SWITCH)).toEqual({ kind: 'none' });
    expect(problemReport(new Error('out of memory'), TaskKind.TASK_KIND_EVALUATE)).toEqual({ kind: 'none' });
  });
});
