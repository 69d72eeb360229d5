import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { federation, studyDefinitionJson, studyDefinitionSchema, studyHash, type StudyDefinition } from '@federa/shared';
import { sitePolicySchema } from '../config/index.js';
import { PolicyRefusalError, StudyDecisions } from '../policy/index.js';
import { testStudy } from '../policy/policy.testkit.js';
import { TaskGate } from './task-gate.js';

const def: StudyDefinition = testStudy();

const trainTask = (definition: StudyDefinition, overrides: Partial<federation.TrainTask> = {}): federation.TrainTask => ({
  studyId: 'study-1',
  round: 1,
  studyHash: studyHash(definition),
  classNames: definition.classNames,
  encoding: federation.UpdateEncoding.UPDATE_ENCODING_MULTIPARTY,
  deadlineUnixMs: 0,
  preprocessingJson: '',
  studyDefinitionJson: studyDefinitionJson(definition),
  cohort: ['hospital-a', 'hospital-b', 'hospital-c'],
  ...overrides,
});

/** What refusal (if any) the gate answers a task with. */
async function verdict(gate: TaskGate, task: federation.TrainTask): Promise<string> {
  try {
    await gate.admitTrain(task);
    return 'admitted';
  } catch (error) {
    if (error instanceof PolicyRefusalError) return federation.refusalReasonToJSON(error.refusal.reason);
    throw error;
  }
}

describe('the task gate at a site', () => {
  let dir: string;
  let decisions: StudyDecisions;
  const gate = (policy: Record<string, unknown> = {}) => new TaskGate(decisions, sitePolicySchema.parse(policy), 'hospital-a');

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-gate-'));
    decisions = new StudyDecisions(dir);
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('refuses a study the hospital has not approved, and remembers it for review', async () => {
    expect(await verdict(gate(), trainTask(def))).toBe('REFUSAL_REASON_NOT_APPROVED');
    const [offered] = await decisions.known();
    expect(offered?.hash).toBe(studyHash(def));
  });

  it('runs an approved study, and refuses it again once rejected', async () => {
    await gate().admitTrain(trainTask(def)).catch(() => undefined);
    await decisions.decide(studyHash(def), 'approved', 'it', undefined, 'study-1');
    expect(await verdict(gate(), trainTask(def))).toBe('admitted');
    await decisions.decide(studyHash(def), 'rejected', 'ciso', undefined, 'study-1');
    expect(await verdict(gate(), trainTask(def))).toBe('REFUSAL_REASON_REJECTED');
  });

  it('refuses a definition that does not hash to the study hash, or that changed after approval', async () => {
    await gate().admitTrain(trainTask(def)).catch(() => undefined);
    await decisions.decide(studyHash(def), 'approved', 'it', undefined, 'study-1');
    // The coordinator sends the approved hash with another definition (more rounds): the bytes do not match.
    const changed = studyDefinitionSchema.parse({ ...def, rounds: 50 });
    expect(await verdict(gate(), trainTask(def, { studyDefinitionJson: studyDefinitionJson(changed) }))).toBe('REFUSAL_REASON_DEFINITION_MISMATCH');
    // ... or the changed definition under its own hash: that one was never approved.
    expect(await verdict(gate(), trainTask(changed))).toBe('REFUSAL_REASON_NOT_APPROVED');
    // A definition this agent would read with other defaults (not canonical) is refused too.
    const padded = JSON.stringify(JSON.parse(studyDefinitionJson(def)), null, 1);
    expect(await verdict(gate(), trainTask(def, { studyDefinitionJson: padded, studyHash: studyHash(def) }))).toBe('REFUSAL_REASON_DEFINITION_MISMATCH');
    // A task whose fields contradict the approved definition (plaintext updates for a ckks study).
    expect(await verdict(gate(), trainTask(def, { encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32 }))).toBe(
      'REFUSAL_REASON_DEFINITION_MISMATCH',
    );
  });

  it('refuses a study id that would lead outside the state folder', async () => {
    expect(await verdict(gate({ autoApprove: true }), trainTask(def, { studyId: '../../etc' }))).toBe('REFUSAL_REASON_DEFINITION_MISMATCH');
  });

  it('applies the policy before any approval: plaintext, cohort, rounds', async () => {
    const plaintext = studyDefinitionSchema.parse({ ...def, aggregation: 'plaintext' });
    await gate().admitTrain(trainTask(plaintext)).catch(() => undefined);
    await decisions.decide(studyHash(plaintext), 'approved', 'it', undefined, 'study-1');
    expect(await verdict(gate(), trainTask(plaintext, { encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32 }))).toBe(
      'REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED',
    );
    const single = studyDefinitionSchema.parse({ ...def, minSites: 1 });
    expect(await verdict(gate({ autoApprove: true }), trainTask(single))).toBe('REFUSAL_REASON_COHORT_TOO_SMALL');
    expect(await verdict(gate({ autoApprove: true }), trainTask(def, { cohort: ['hospital-a', 'hospital-b'] }))).toBe('REFUSAL_REASON_COHORT_TOO_SMALL');
    expect(await verdict(gate({ autoApprove: true }), trainTask(def, { cohort: ['hospital-b', 'hospital-c', 'hospital-d'] }))).toBe('REFUSAL_REASON_NOT_IN_COHORT');
    expect(await verdict(gate({ autoApprove: true, maxRounds: 2 }), trainTask(def))).toBe('REFUSAL_REASON_TOO_MANY_ROUNDS');
  });

  it('records what autoApprove approved, so the decision is on file like any other', async () => {
    expect(await verdict(gate({ autoApprove: true }), trainTask(def))).toBe('admitted');
    expect(await decisions.decisionFor('study-1', studyHash(def))).toMatchObject({ decision: 'approved', by: 'policy.autoApprove' });
  });
});
