import {
  createLogger,
  encodingOfAggregation,
  federation,
  STUDY_ID,
  StudyDefinitionMismatchError,
  verifyStudyDefinition,
  type StudyDefinition,
} from '@federa/shared';
import type { SitePolicy } from '../config/index.js';
import { approvalRefusal, cohortRefusal, PolicyRefusalError, StudyDecisions, studyRefusal } from '../policy/index.js';

/**
 * Where the hospital's decision meets the coordinator's task. Before anything is computed: the definition the task
 * carries must hash to the study hash, the hospital must have approved that hash, and the study and round must fit
 * the site policy. The agent then takes the model, training settings and preprocessing from this verified
 * definition, never from the task's other fields.
 */
export class TaskGate {
  private readonly log = createLogger('site-agent.policy');
  /** Verified definitions by study id, for tasks that carry none (StudyClosed). */
  private readonly definitions = new Map<string, StudyDefinition>();

  constructor(
    private readonly decisions: StudyDecisions,
    private readonly policy: SitePolicy,
    private readonly siteId: string,
  ) {}

  /** The study's verified definition, if this process has admitted a task of it. */
  definitionOf(studyId: string): StudyDefinition | undefined {
    return this.definitions.get(studyId);
  }

  async admitTrain(task: federation.TrainTask): Promise<StudyDefinition> {
    const def = await this.admitStudy(task.studyId, task.studyHash, task.studyDefinitionJson);
    if (task.encoding !== encodingOfAggregation(def.aggregation)) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH,
        message: `the task asks for ${federation.updateEncodingToJSON(task.encoding)} updates but the approved definition aggregates with ${def.aggregation}`,
      });
    }
    if (task.round < 1 || task.round > def.rounds) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH,
        message: `the task is for round ${task.round} but the approved definition has rounds 1 to ${def.rounds}`,
      });
    }
    const cohort = cohortRefusal(task.cohort, this.siteId, this.policy, def.sites);
    if (cohort) throw new PolicyRefusalError(cohort);
    return def;
  }

  /** A key-switching share helps decrypt a study's sum: only for a study the hospital approved, by its hash. */
  async admitKeySwitch(task: federation.KeySwitchTask): Promise<void> {
    if (!STUDY_ID.test(task.studyId)) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH,
        message: `the task names study "${task.studyId.slice(0, 80)}", which is not a study id`,
      });
    }
    const decision = await this.decisions.decisionFor(task.studyId, task.studyHash);
    const approval = approvalRefusal(task.studyHash, decision, this.policy);
    if (approval) throw new PolicyRefusalError(approval);
  }

  async admitEvaluate(task: federation.EvaluateTask): Promise<StudyDefinition> {
    return this.admitStudy(task.studyId, task.studyHash, task.studyDefinitionJson);
  }

  private async admitStudy(studyId: string, hash: string, json: string): Promise<StudyDefinition> {
    if (!STUDY_ID.test(studyId)) {
      throw new PolicyRefusalError({
        reason: federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH,
        message: `the task names study "${studyId.slice(0, 80)}", which is not a study id`,
      });
    }
    let def: StudyDefinition;
    try {
      def = verifyStudyDefinition(json, hash);
    } catch (error) {
      if (error instanceof StudyDefinitionMismatchError) {
        throw new PolicyRefusalError({ reason: federation.RefusalReason.REFUSAL_REASON_DEFINITION_MISMATCH, message: error.message });
      }
      throw error;
    }
    await this.decisions.remember({ hash, studyId, name: def.name, owner: '', definitionJson: json });
    // The site policy first: a study it forbids is refused whatever anyone approved.
    const policy = studyRefusal(def, this.policy);
    if (policy) throw new PolicyRefusalError(policy);
    const decision = await this.decisions.decisionFor(studyId, hash);
    const approval = approvalRefusal(hash, decision, this.policy);
    if (approval) throw new PolicyRefusalError(approval);
    if (!decision && this.policy.autoApprove) {
      this.log.warn(
        { studyId, studyHash: hash, name: def.name },
        'AUTO-APPROVED a study without asking the hospital: policy.autoApprove is for demos and local tests only',
      );
      await this.decisions.decide(hash, 'approved', 'policy.autoApprove', 'approved automatically (policy.autoApprove)', studyId);
    }
    this.definitions.set(studyId, def);
    return def;
  }
}
