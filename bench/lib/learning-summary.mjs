// The learning benchmark's console summary: per-seed and mean accuracies, the targets, the DP, linear and server rows
// and the rounds to plateau, as lines. Pure: it prints nothing itself.
import { linearSummaryLines } from './learning-linear.mjs';
import { plateauSummary, tableLines } from './server-rows.mjs';

/** A model's held-out accuracy and AUC, as the console shows them. */
export const fmt = (m) => `accuracy ${(100 * m.accuracy).toFixed(1)}%, AUC ${m.auc === null ? '-' : m.auc.toFixed(3)}`;

/** The summary of a results document (as bench/learning.mjs writes it) and the run's duration, as lines. */
export function learningSummaryLines(results, totalSeconds) {
  const lines = [];
  const say = (line) => lines.push(line);
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  say(`\nper seed (held-out accuracy): pooled | ${results.seeds[0].singleSite.map((s) => `${s.site} alone`).join(' | ')} | FedAvg | FedProx`);
  for (const s of results.seeds) {
    say(`  seed ${s.seed}: ${pct(s.pooled.accuracy)} | ${s.singleSite.map((x) => pct(x.accuracy)).join(' | ')} | ${pct(s.fedavg.accuracy)} | ${pct(s.fedprox.accuracy)}`);
  }
  say(`mean over ${results.seeds.length} seed${results.seeds.length === 1 ? '' : 's'}:`);
  say(`  pooled ${fmt(results.pooled)}`);
  for (const s of results.singleSite) say(`  ${s.site} alone ${fmt(s)}`);
  say(`  FedAvg ${fmt(results.fedavg)}; FedProx ${fmt(results.fedprox)}`);
  const sourceLine = (name, accs) => `  ${name}: ${Object.entries(accs).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(', ')}`;
  const by = results.heldOutAccuracyBySourceHospital;
  say('held-out accuracy by the hospital each image came from (seed mean):');
  say(sourceLine('pooled', by.pooled));
  for (const [site, accs] of Object.entries(by.singleSite)) say(sourceLine(`${site} alone`, accs));
  say(sourceLine('FedAvg', by.fedavg));
  say(sourceLine('FedProx', by.fedprox));
  const met = (flag) => (flag ? 'MET' : 'NOT met');
  say(
    `targets on the means: federated within 2 points of pooled ${met(results.federatedWithin2PointsOfPooled)}, ` +
      `above the best single site (${results.targets.bestSingleSite}) ${met(results.federatedAboveBestSingleSite)}`,
  );
  say(
    `targets at every seed: within 2 points ${met(results.targetsAtEverySeed.federatedWithin2PointsOfPooled)}, ` +
      `above the best single site ${met(results.targetsAtEverySeed.federatedAboveBestSingleSite)}; ${totalSeconds.toFixed(0)} s`,
  );
  say(`DP rows (FedAvg, seed means; DP figures vary between runs even at the same seed):`);
  lines.push(
    ...tableLines([
      ['mode', 'target eps', 'achieved eps', 'delta', 'sigma', 'accuracy', 'AUC'],
      ...results.dp.map((r) => [
        r.mode,
        r.targetEpsilon ?? '-',
        r.epsilon ?? '-',
        r.delta === null ? '-' : r.delta.toExponential(),
        r.noiseMultiplier === undefined ? '-' : r.noiseMultiplier.toFixed(3),
        pct(r.accuracy),
        r.auc === null ? '-' : r.auc.toFixed(3),
      ]),
    ]),
  );
  if (results.linear) for (const line of linearSummaryLines(results.linear)) say(line);
  for (const line of plateauSummary(results)) say(line);
  return lines;
}
