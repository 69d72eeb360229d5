import { parseArgs } from 'node:util';
import { addRdp, DEFAULT_RDP_ORDERS, spentEpsilon } from '@federa/shared';
import { loadSiteConfig } from '../config/index.js';
import { ledgerPath } from '../ledger/index.js';
import { StudyDecisions } from '../policy/index.js';
import { mechanismRdp, PrivacyAccounts, type RoundPrivacy } from '../privacy/index.js';
import { UsageError } from './governance.js';

type Out = (text: string) => void;

/** One study's differential-privacy spend at this site, from the ledger. */
export interface StudyPrivacyView {
  studyId: string;
  name: string | null;
  mode: RoundPrivacy['mode'];
  noiseMultiplier: number;
  clipNorm: number;
  delta: number;
  rounds: Array<{ round: number; sampleRate: number; steps: number; epsilonRound: number; epsilonStudy: number }>;
  /** Epsilon at the study's delta over every round this site sent. */
  epsilon: number;
  /** Against the site's budget, when it has one: epsilon at the budget's delta, and what is left. */
  budget: { epsilon: number; delta: number; spent: number; left: number } | null;
}

/** `federa-site privacy`: what each study has spent of this site's privacy, round by round, and of its budget. */
export async function privacyCommand(argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      study: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.config) throw new UsageError('privacy needs --config <site.yaml>');
  const config = await loadSiteConfig(values.config);
  const studies = await new PrivacyAccounts(ledgerPath(config.stateDir)).all();
  const names = new Map((await new StudyDecisions(config.stateDir).known()).map((s) => [s.studyId, s.name]));
  const budget = config.policy.privacyBudget;
  const views: StudyPrivacyView[] = [];
  for (const [studyId, rounds] of studies) {
    if (values.study && studyId !== values.study) continue;
    const list = [...rounds.entries()].sort(([a], [b]) => a - b);
    const first = list[0]![1];
    const rdp = list.reduce((sum, [, p]) => addRdp(sum, mechanismRdp(p)), DEFAULT_RDP_ORDERS.map(() => 0));
    const atBudget = budget ? spentEpsilon(rdp, budget.delta) : 0;
    views.push({
      studyId,
      name: names.get(studyId) ?? null,
      mode: first.mode,
      noiseMultiplier: first.noiseMultiplier,
      clipNorm: first.clipNorm,
      delta: first.delta,
      rounds: list.map(([round, p]) => ({ round, sampleRate: p.sampleRate, steps: p.steps, epsilonRound: p.epsilonRound, epsilonStudy: p.epsilonStudy })),
      epsilon: spentEpsilon(rdp, first.delta),
      budget: budget ? { epsilon: budget.epsilon, delta: budget.delta, spent: atBudget, left: Math.max(0, budget.epsilon - atBudget) } : null,
    });
  }
  if (values.json) {
    out(`${JSON.stringify({ budget: budget ?? null, studies: views }, null, 2)}\n`);
    return 0;
  }
  out(`${budget ? `privacy budget per study: epsilon ${budget.epsilon} at delta ${budget.delta} (policy.privacyBudget)` : 'no privacy budget set (policy.privacyBudget): spend is accounted, not capped'}\n`);
  if (views.length === 0) {
    out(values.study ? `study ${values.study} has spent nothing at this site (no update with differential privacy in the ledger)\n` : 'no study has spent any privacy at this site yet\n');
    return 0;
  }
  for (const view of views) out(formatView(view));
  return 0;
}

function formatView(v: StudyPrivacyView): string {
  const mode = v.mode === 'sample' ? 'DP-SGD (each image)' : 'site-level (the whole dataset)';
  const lines = [
    `${v.studyId}${v.name ? `  ${v.name}` : ''}`,
    `  mechanism:  ${mode}, noise multiplier ${v.noiseMultiplier}, clip norm ${v.clipNorm}, delta ${v.delta}`,
    `  spent:      epsilon ${v.epsilon.toFixed(3)} at delta ${v.delta} over ${v.rounds.length} round(s)`,
  ];
  if (v.budget) lines.push(`  budget:     epsilon ${v.budget.spent.toFixed(3)} of ${v.budget.epsilon} at delta ${v.budget.delta}; ${v.budget.left.toFixed(3)} left`);
  lines.push('  round  sample rate  steps  epsilon (round)  epsilon (study so far)');
  for (const r of v.rounds) {
    lines.push(`  ${String(r.round).padStart(5)}  ${r.sampleRate.toFixed(4).padStart(11)}  ${String(r.steps).padStart(5)}  ${r.epsilonRound.toFixed(3).padStart(15)}  ${r.epsilonStudy.toFixed(3).padStart(22)}`);
  }
  return `${lines.join('\n')}\n\n`;
}
