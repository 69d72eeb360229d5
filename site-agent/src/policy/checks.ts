import { federation, readContributions, type StudyDefinition } from '@federa/shared';
import type { SitePolicy } from '../config/index.js';
import type { DecisionRecord } from './decisions.js';

/** Why the site will not do what a task asks: the code the coordinator records, and words for the people reading it. */
export interface PolicyRefusal {
  reason: federation.RefusalReason;
  message: string;
}

/** The task's study must be approved by the hospital (or autoApprove, for demos and local tests). */
export function approvalRefusal(hash: string, decision: DecisionRecord | null, policy: SitePolicy): PolicyRefusal | null {
  if (decision?.decision === 'rejected') {
    return { reason: federation.RefusalReason.REFUSAL_REASON_REJECTED, message: `the hospital rejected study ${hash} (${decision.at} by ${decision.by})` };
  }
  if (decision?.decision === 'approved' || policy.autoApprove) return null;
  return {
    reason: federation.RefusalReason.REFUSAL_REASON_NOT_APPROVED,
    message: `study ${hash} is not approved at this site; its IT can review it with \`federa-site studies\` and run \`federa-site approve ${hash.slice(0, 12)}\``,
  };
}

/** What the study itself asks that the policy forbids, whatever the round. */
export function studyRefusal(def: StudyDefinition, policy: SitePolicy): PolicyRefusal | null {
  if (def.aggregation === 'plaintext' && policy.requireEncryption) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_PLAINTEXT_NOT_ALLOWED,
      message: 'the study aggregates updates in the clear and this site\'s policy requires encryption (policy.requireEncryption)',
    };
  }
  if (def.rounds > policy.maxRounds) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_TOO_MANY_ROUNDS,
      message: `the study has ${def.rounds} rounds and this site's policy allows at most ${policy.maxRounds} (policy.maxRounds)`,
    };
  }
  if (def.minSites < policy.minParticipants) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_COHORT_TOO_SMALL,
      message: `the study may aggregate as few as ${def.minSites} sites and this site's policy needs at least ${policy.minParticipants} (policy.minParticipants)`,
    };
  }
  return null;
}

/** The round's cohort: this site must be in it, it must be big enough, and within the study's sites when it names them. */
export function cohortRefusal(cohort: readonly string[], siteId: string, policy: SitePolicy, studySites?: readonly string[]): PolicyRefusal | null {
  if (!cohort.includes(siteId)) {
    return { reason: federation.RefusalReason.REFUSAL_REASON_NOT_IN_COHORT, message: `the round's cohort [${cohort.join(', ')}] does not include ${siteId}` };
  }
  if (new Set(cohort).size !== cohort.length) {
    return { reason: federation.RefusalReason.REFUSAL_REASON_NOT_IN_COHORT, message: `the round's cohort [${cohort.join(', ')}] names a site twice` };
  }
  const outside = studySites ? cohort.filter((site) => !studySites.includes(site)) : [];
  if (outside.length > 0) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_NOT_IN_COHORT,
      message: `the round's cohort names [${outside.join(', ')}], which the study does not (it is for [${studySites?.join(', ')}])`,
    };
  }
  if (cohort.length < policy.minParticipants) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_COHORT_TOO_SMALL,
      message: `the round's cohort has ${cohort.length} sites and this site's policy needs at least ${policy.minParticipants} (policy.minParticipants)`,
    };
  }
  return null;
}

/** An aggregate's claim, checked before anything is decrypted: enough distinct sites, all from the round's cohort. */
export function aggregateClaimRefusal(
  ref: { cohort: readonly string[]; contributors: readonly string[]; round: number },
  policy: SitePolicy,
): PolicyRefusal | null {
  const claimed = ref.contributors;
  if (new Set(claimed).size !== claimed.length || claimed.some((site) => !ref.cohort.includes(site))) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH,
      message: `the aggregate of round ${ref.round} is said to sum [${claimed.join(', ')}], which is not a set of sites from its cohort [${ref.cohort.join(', ')}]`,
    };
  }
  if (claimed.length < policy.minParticipants) {
    return {
      reason: federation.RefusalReason.REFUSAL_REASON_AGGREGATE_TOO_FEW_CONTRIBUTIONS,
      message: `the aggregate of round ${ref.round} sums ${claimed.length} sites' updates and this site's policy needs at least ${policy.minParticipants}; it was not decrypted`,
    };
  }
  return null;
}

/**
 * A decrypted aggregate's content: every ciphertext's tags must be those of the claimed sites (tagProblems), and
 * the contribution slots must name exactly them, each once. Otherwise the decrypted values are dropped unused.
 */
export function aggregateContentRefusal(
  tagProblems: readonly string[],
  slots: ArrayLike<number>,
  ref: { cohort: readonly string[]; contributors: readonly string[]; round: number },
): PolicyRefusal | null {
  const { contributors, problems } = readContributions(slots, ref.cohort);
  const claimed = [...ref.contributors].sort();
  const slotsDisagree = contributors.length !== claimed.length || contributors.some((site) => !claimed.includes(site));
  const all = [
    ...tagProblems,
    ...problems,
    ...(problems.length === 0 && slotsDisagree ? [`its contribution slots name [${contributors.join(', ')}], not [${claimed.join(', ')}]`] : []),
  ];
  if (all.length === 0) return null;
  return {
    reason: federation.RefusalReason.REFUSAL_REASON_AGGREGATE_MISMATCH,
    message: `the aggregate of round ${ref.round} is not the sum of the updates the coordinator names; it was discarded unused: ${all.join('; ')}`,
  };
}

/** A refusal as an error, so the code that met it can stop and the task handler can report it. */
export class PolicyRefusalError extends Error {
  override readonly name = 'PolicyRefusalError';
  constructor(readonly refusal: PolicyRefusal) {
    super(refusal.message);
  }
}
