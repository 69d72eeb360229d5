import { addRdp, DEFAULT_RDP_ORDERS, federation, roundMechanism, spentEpsilon, subsampledGaussianRdp, type StudyDefinition } from '@federa/shared';
import { z } from 'zod';
import type { SitePolicy } from '../config/index.js';
import { readLedger } from '../ledger/index.js';
import type { PolicyRefusal } from '../policy/index.js';

/**
 * What one round of a study with differential privacy releases about this site's data, as the ledger keeps it with
 * the update it describes: the mechanism (enough to recompute its RDP) and, for readers, epsilon at the study's delta
 * for the round alone and for the study up to and including it.
 */
export const roundPrivacySchema = z
  .object({
    mode: z.enum(['sample', 'site']),
    sampleRate: z.number().min(0).max(1),
    steps: z.int().min(0),
    noiseMultiplier: z.number().positive(),
    clipNorm: z.number().positive(),
    delta: z.number().gt(0).lt(1),
    epsilonRound: z.number().min(0),
    epsilonStudy: z.number().min(0),
  })
  .strict();

export type RoundPrivacy = z.output<typeof roundPrivacySchema>;

/** A study's spend so far at this site: the rounds that left, their RDP summed, and epsilon at a delta. */
export interface StudySpend {
  rounds: number[];
  rdp: number[];
}

/** The RDP curve of one round's mechanism. */
export function mechanismRdp(p: Pick<RoundPrivacy, 'sampleRate' | 'noiseMultiplier' | 'steps'>): number[] {
  return subsampledGaussianRdp(p.sampleRate, p.noiseMultiplier, p.steps, DEFAULT_RDP_ORDERS);
}

/**
 * The site's privacy accounts, read from its ledger: a round counts once (an update sent again, after a restart or
 * under a new key epoch, is the same release) and only once it left, so a round trained but never sent costs nothing.
 */
export class PrivacyAccounts {
  constructor(private readonly ledgerFile: string) {}

  /** Every study's spend, by study id. */
  async all(): Promise<Map<string, Map<number, RoundPrivacy>>> {
    const { entries } = await readLedger(this.ledgerFile);
    const studies = new Map<string, Map<number, RoundPrivacy>>();
    for (const entry of entries) {
      if (entry.kind !== 'update' || entry.studyId === null || entry.round === null || entry.detail.privacy === undefined) continue;
      const parsed = roundPrivacySchema.safeParse(entry.detail.privacy);
      // The ledger verifies as a chain elsewhere; an entry this agent cannot read as a spend is not guessed at.
      if (!parsed.success) throw new Error(`ledger entry ${entry.seq} carries a privacy record this agent cannot read; run \`federa-site ledger verify\``);
      const rounds = studies.get(entry.studyId) ?? new Map<number, RoundPrivacy>();
      if (!rounds.has(entry.round)) rounds.set(entry.round, parsed.data);
      studies.set(entry.studyId, rounds);
    }
    return studies;
  }

  async spend(studyId: string): Promise<StudySpend> {
    const rounds = (await this.all()).get(studyId) ?? new Map<number, RoundPrivacy>();
    let rdp = DEFAULT_RDP_ORDERS.map(() => 0);
    for (const p of rounds.values()) rdp = addRdp(rdp, mechanismRdp(p));
    return { rounds: [...rounds.keys()].sort((a, b) => a - b), rdp };
  }
}

/** The mechanism of the round this site is about to train, or null for a study without differential privacy. */
export function plannedRound(def: StudyDefinition, trainingImages: number): Omit<RoundPrivacy, 'epsilonRound' | 'epsilonStudy'> | null {
  const p = def.privacy;
  if (!p || p.mode === 'none') return null;
  if (p.noiseMultiplier === undefined || p.clipNorm === undefined || p.delta === undefined) {
    throw new Error('the study\'s privacy settings lack a noise multiplier, clip norm or delta; the coordinator fills them in when the study is created');
  }
  return { mode: p.mode, ...roundMechanism(def, trainingImages), noiseMultiplier: p.noiseMultiplier, clipNorm: p.clipNorm, delta: p.delta };
}

/**
 * Whether the hospital's budget allows the round: the study's spend with this round added, at the budget's delta,
 * must stay within its epsilon. With a budget set, a study without differential privacy (whose spend has no bound)
 * and one whose delta is above the budget's are refused too. Null: go ahead (always, without a budget).
 */
export function budgetRefusal(
  def: StudyDefinition,
  round: number,
  planned: ReturnType<typeof plannedRound>,
  spent: StudySpend,
  policy: SitePolicy,
): PolicyRefusal | null {
  const budget = policy.privacyBudget;
  if (!budget || !planned) return studyBudgetRefusal(def, policy);
  const refuse = (message: string): PolicyRefusal => ({ reason: federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET, message });
  const whole = studyBudgetRefusal(def, policy);
  if (whole) return whole;
  const before = spent.rounds.length > 0 ? spentEpsilon(spent.rdp, budget.delta) : 0;
  const after = spentEpsilon(addRdp(spent.rdp, mechanismRdp(planned)), budget.delta);
  if (after > budget.epsilon) {
    return refuse(
      `round ${round} would bring this study's privacy spend to epsilon ${after.toFixed(3)} at delta ${budget.delta} (${spent.rounds.length} rounds spent ${before.toFixed(3)}), ` +
        `past this site's budget of epsilon ${budget.epsilon} (policy.privacyBudget)`,
    );
  }
  return null;
}

/**
 * What the budget refuses of a study whatever its rounds and data: no differential privacy (its spend has no bound)
 * or a delta above the budget's. Null without a budget.
 */
export function studyBudgetRefusal(def: StudyDefinition, policy: SitePolicy): PolicyRefusal | null {
  const budget = policy.privacyBudget;
  if (!budget) return null;
  const refuse = (message: string): PolicyRefusal => ({ reason: federation.RefusalReason.REFUSAL_REASON_PRIVACY_BUDGET, message });
  const p = def.privacy;
  if (!p || p.mode === 'none') {
    return refuse(`the study has no differential privacy, so what it releases has no bound, and this site's policy sets a privacy budget (policy.privacyBudget epsilon ${budget.epsilon})`);
  }
  if (p.delta !== undefined && p.delta > budget.delta) return refuse(`the study's delta ${p.delta} is above this site's budget delta ${budget.delta} (policy.privacyBudget)`);
  return null;
}

/** The ledger record of the round: its mechanism and what it and the study so far spend at the study's delta. */
export function roundRecord(planned: NonNullable<ReturnType<typeof plannedRound>>, spent: StudySpend): RoundPrivacy {
  const own = mechanismRdp(planned);
  return {
    ...planned,
    epsilonRound: spentEpsilon(own, planned.delta),
    epsilonStudy: spentEpsilon(addRdp(spent.rdp, own), planned.delta),
  };
}
