import {
  consortiumMultipartyFingerprint,
  encodingOfAggregation,
  federation,
  modelSpecToMessage,
  preprocessingToJson,
  studyDefinitionJson,
  studyDefinitionSchema,
  type StudyDefinition,
} from '@federa/shared';

/** What tasks are made from: the rows as the database has them. */
export interface StudyRow {
  id: string;
  name: string;
  status: string;
  spec: unknown;
  specHash: string;
  totalRounds: number;
  currentRound: number;
}

export interface ModelRow {
  round: number;
  kind: 'weights' | 'encrypted_aggregate' | 'multiparty_aggregate';
  /** multiparty_aggregate: the key epoch whose model key decrypts it. */
  keyEpoch?: number | null;
  sha256: string;
  sizeBytes: number;
  parameterCount: number;
}

/** A round's cohort (the contribution slots' order) and the sites the coordinator summed into its model. */
export interface AggregateMembers {
  cohort: string[];
  contributors: string[];
}

export function definitionOf(study: Pick<StudyRow, 'spec'>): StudyDefinition {
  // Stored definitions were validated on the way in; parsing again guards against hand-edited rows.
  return studyDefinitionSchema.parse(study.spec);
}

export function encodingOf(def: StudyDefinition): federation.UpdateEncoding {
  return encodingOfAggregation(def.aggregation);
}

/** How a stored model artifact travels on the wire. */
export function modelKindOf(kind: ModelRow['kind']): federation.ModelKind {
  if (kind === 'weights') return federation.ModelKind.MODEL_KIND_WEIGHTS;
  return kind === 'multiparty_aggregate' ? federation.ModelKind.MODEL_KIND_MULTIPARTY_AGGREGATE : federation.ModelKind.MODEL_KIND_ENCRYPTED_AGGREGATE;
}

/** A stored model version as tasks and downloads carry it. */
export function modelRefOf(studyId: string, model: ModelRow, members: AggregateMembers | null): federation.ModelRef {
  return {
    studyId,
    round: model.round,
    kind: modelKindOf(model.kind),
    sha256: model.sha256,
    sizeBytes: model.sizeBytes,
    parameterCount: model.parameterCount,
    cohort: members?.cohort ?? [],
    contributors: members?.contributors ?? [],
    keyEpoch: model.keyEpoch ?? 0,
  };
}

/** A multiparty round's key epoch as its train task carries it: the members are the round's cohort. */
export function keyEpochRefOf(round: { keyEpoch?: number | null; assignedSites: string[] }): federation.KeyEpochRef | undefined {
  if (round.keyEpoch == null) return undefined;
  return { number: round.keyEpoch, members: [...round.assignedSites].sort(), parameters: consortiumMultipartyFingerprint() };
}

export function trainTask(
  study: StudyRow,
  round: { number: number; deadlineAt: Date | null; assignedSites: string[]; keyEpoch?: number | null },
  base: federation.ModelRef,
): federation.Task {
  const def = definitionOf(study);
  const keyEpoch = keyEpochRefOf(round);
  return {
    taskId: `${study.id}/${round.number}/train`,
    kind: {
      $case: 'train',
      value: {
        studyId: study.id,
        round: round.number,
        studyHash: study.specHash,
        model: modelSpecToMessage(def.model),
        classNames: def.classNames,
        training: {
          // The study definition guarantees exactly one of the two; 0 on the wire means "not this one".
          localEpochs: def.localEpochs ?? 0,
          localSteps: def.localSteps ?? 0,
          batchSize: def.batchSize,
          learningRate: def.learningRate,
          optimizer: def.optimizer === 'adam' ? federation.Optimizer.OPTIMIZER_ADAM : federation.Optimizer.OPTIMIZER_SGD,
          ...(def.augmentation ? { augmentation: def.augmentation } : {}),
          ...(def.classWeights
            ? {
                classWeighting:
                  def.classWeights === 'balanced' ? { balanced: true, weights: [] } : { balanced: false, weights: def.classWeights },
              }
            : {}),
          proximalMu: def.fedProxMu,
        },
        baseModel: base,
        encoding: encodingOf(def),
        deadlineUnixMs: round.deadlineAt?.getTime() ?? 0,
        preprocessingJson: preprocessingToJson(def.preprocessing),
        studyDefinitionJson: studyDefinitionJson(def),
        cohort: [...round.assignedSites].sort(),
        ...(keyEpoch ? { keyEpoch } : {}),
      },
    },
  };
}

export function evaluateTask(study: StudyRow, round: number, model: federation.ModelRef, bins: number): federation.Task {
  const def = definitionOf(study);
  return {
    taskId: `${study.id}/${round}/evaluate`,
    kind: {
      $case: 'evaluate',
      value: {
        studyId: study.id,
        round,
        studyHash: study.specHash,
        model: modelSpecToMessage(def.model),
        classNames: def.classNames,
        globalModel: model,
        preprocessingJson: preprocessingToJson(def.preprocessing),
        bins,
        studyDefinitionJson: studyDefinitionJson(def),
      },
    },
  };
}

export function studyClosedTask(
  studyId: string,
  outcome: federation.StudyOutcome,
  message: string,
  finalRound: number,
): federation.Task {
  return { taskId: `${studyId}/closed`, kind: { $case: 'studyClosed', value: { studyId, outcome, message, finalRound } } };
}
