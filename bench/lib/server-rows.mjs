// The learning benchmark's server optimizer rows (FedAvg whose sites step the decrypted average update with FedAvgM,
// FedAdagrad, FedAdam or FedYogi) and how many rounds each method needs to reach its plateau. Pure: nothing here
// trains or touches the disk.
import { meanCurve } from './learning-report.mjs';

// 'fedavg': no server optimizer (settings null), for rows that change only the sites' local work.
const NAMES = { fedavg: 'FedAvg', fedavgm: 'FedAvgM', fedadagrad: 'FedAdagrad', fedadam: 'FedAdam', fedyogi: 'FedYogi' };
const SETTING_KEYS = ['learningRate', 'beta1', 'beta2', 'tau'];
const LOCAL_KEYS = { localOptimizer: 'optimizer', localLearningRate: 'learningRate', localEpochs: 'epochs', localProximalMu: 'proximalMu' };

/**
 * `--server-optimizers`: 'none', or rows separated by ';', each `kind:key=value,...` with the optimizer's settings
 * (learningRate, beta1, beta2, tau; the schema's defaults fill the rest) and optionally the sites' own optimizer for
 * that row (localOptimizer=sgd|adam, localLearningRate=x), local epochs per round (localEpochs=n, a whole number) and
 * FedProx's term at the sites (localProximalMu=x),
 * e.g. `fedavgm:learningRate=1,beta1=0.5;fedadam:learningRate=0.003,localEpochs=4`.
 * `fedavg` takes no settings: plain FedAvg, e.g. `fedavg:localEpochs=4`.
 * Returns [{ label, settings, local }] with settings not yet validated (the caller parses them with the study schema),
 * null for fedavg.
 */
export function parseServerOptimizerRows(text) {
  const trimmed = text.trim();
  if (trimmed === 'none' || trimmed === '') return [];
  return trimmed.split(';').map((part) => {
    const [kind, options = ''] = part.trim().split(':');
    if (!(kind in NAMES)) throw new RangeError(`--server-optimizers: unknown optimizer "${kind}" in "${part}"; one of ${Object.keys(NAMES).join(', ')}`);
    const settings = { kind };
    const local = {};
    for (const pair of options.split(',').filter((p) => p.trim() !== '')) {
      const [key, value] = pair.split('=').map((s) => s.trim());
      if (key === 'localOptimizer') {
        if (value !== 'sgd' && value !== 'adam') throw new RangeError(`--server-optimizers: localOptimizer must be sgd or adam, got ${value}`);
        local.optimizer = value;
        continue;
      }
      const n = Number(value);
      if (value === undefined || value === '' || !Number.isFinite(n)) throw new RangeError(`--server-optimizers: ${key} needs a number, got "${pair}"`);
      if (key === 'localEpochs' && !(Number.isInteger(n) && n >= 1)) throw new RangeError(`--server-optimizers: localEpochs must be a whole number >= 1, got "${pair}"`);
      if (key in LOCAL_KEYS) local[LOCAL_KEYS[key]] = n;
      else if (SETTING_KEYS.includes(key) && kind !== 'fedavg') settings[key] = n;
      else if (SETTING_KEYS.includes(key)) throw new RangeError(`--server-optimizers: fedavg has no server optimizer, so no ${key}; use fedavgm`);
      else throw new RangeError(`--server-optimizers: unknown setting "${key}"; one of ${[...SETTING_KEYS, ...Object.keys(LOCAL_KEYS)].join(', ')}`);
    }
    return { label: rowLabel(settings, local), settings: kind === 'fedavg' ? null : settings, local };
  });
}

function rowLabel(settings, local) {
  const shown = SETTING_KEYS.filter((k) => settings[k] !== undefined).map((k) => `${{ learningRate: 'lr', beta1: 'b1', beta2: 'b2', tau: 'tau' }[k]} ${settings[k]}`);
  const sites = [
    local.optimizer,
    local.learningRate === undefined ? undefined : `lr ${local.learningRate}`,
    local.epochs === undefined ? undefined : `${local.epochs} epochs/round`,
    local.proximalMu === undefined ? undefined : `FedProx mu ${local.proximalMu}`,
  ].filter(
    (x) => x !== undefined,
  );
  return `${NAMES[settings.kind]}${shown.length > 0 ? ` (${shown.join(', ')})` : ''}${sites.length > 0 ? ` sites ${sites.join(' ')}` : ''}`;
}

/**
 * How soon a curve (checkpoints, round 0 first) gets within 1 point of `reference`: the first round at or above it
 * (`first`), and the first from which every later checkpoint stays there (`stays`); null when it never does.
 */
export function roundsToWithin(curve, reference, points = 1) {
  const bar = reference - points / 100 - 1e-9;
  const first = curve.find((c) => c.round > 0 && c.accuracy >= bar)?.round ?? null;
  let stays = null;
  for (let i = curve.length - 1; i >= 0 && curve[i].round > 0 && curve[i].accuracy >= bar; i--) stays = curve[i].round;
  return { first, stays };
}

/**
 * Rounds to plateau for each method on its seed-mean curve (`curves`: { name: curve }), against its own final
 * accuracy and against pooled training's. The budget is twice the rounds pooled needs to get within 1 point of its
 * own final; a method meets it on its own final when its plateau comes by then, and on pooled's final when it is
 * within 1 point of pooled's final by then (each counted as the first round that is).
 */
export function plateauRounds(curves) {
  const pooledFinal = curves.pooled.at(-1).accuracy;
  const pooledRounds = roundsToWithin(curves.pooled, pooledFinal).first;
  const budget = pooledRounds === null ? null : 2 * pooledRounds;
  const rows = Object.entries(curves).map(([method, curve]) => {
    const final = curve.at(-1).accuracy;
    const own = roundsToWithin(curve, final);
    const ofPooled = roundsToWithin(curve, pooledFinal);
    return {
      method,
      finalAccuracy: final,
      finalAuc: curve.at(-1).auc,
      firstWithin1PointOfOwnFinal: own.first,
      staysWithin1PointOfOwnFinal: own.stays,
      firstWithin1PointOfPooledFinal: ofPooled.first,
      staysWithin1PointOfPooledFinal: ofPooled.stays,
      meetsTargetOnOwnFinal: budget !== null && own.first !== null && own.first <= budget,
      meetsTargetOnPooledFinal: budget !== null && ofPooled.first !== null && ofPooled.first <= budget,
    };
  });
  return { pooledFinalAccuracy: pooledFinal, pooledRounds, targetRounds: budget, rows };
}

/** The middle value, rounds that never came (null) counting as later than any; null when half or more never came. */
export function medianRound(values) {
  const sorted = values.map((v) => v ?? Infinity).sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const m = sorted.length % 2 === 1 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2;
  return Number.isFinite(m) ? m : null;
}

/**
 * Rounds to plateau seed by seed, where the seed-mean curve blurs them (one seed's late jump from 50% moves the mean's
 * plateau for all). At each seed a method's plateau is the first round within 1 point of its own final accuracy there,
 * as "pooled plateaus by round 4, FedAvg by round 13" was measured, and it meets the target when that is at most
 * twice pooled's plateau at the same seed. The stricter reading, as good as pooled that soon, is also counted: the
 * first round within 1 point of the seed's pooled final, against the same budget.
 * `seedCurves`: [{ seed, pooled, fedavg, fedprox }]; `serverOptimizers`: [{ label, perSeed: [{ seed, curve }] }].
 */
export function perSeedPlateaus(seedCurves, serverOptimizers = []) {
  const seeds = seedCurves.map((s) => s.seed);
  const pooledFinal = seedCurves.map((s) => s.pooled.at(-1).accuracy);
  const pooledRounds = seedCurves.map((s, i) => roundsToWithin(s.pooled, pooledFinal[i]).first);
  const budgets = pooledRounds.map((r) => (r === null ? null : 2 * r));
  const methods = [
    ...['pooled', 'fedavg', 'fedprox'].map((method) => ({ method, curves: seedCurves.map((s) => s[method]) })),
    ...serverOptimizers.map((row) => ({
      method: row.label,
      curves: seeds.map((seed) => {
        const mine = row.perSeed.find((p) => p.seed === seed);
        if (!mine) throw new RangeError(`perSeedPlateaus: row "${row.label}" has no curve for seed ${seed}`);
        return mine.curve;
      }),
    })),
  ];
  const within = (rounds, i) => rounds[i] !== null && budgets[i] !== null && rounds[i] <= budgets[i];
  const rows = methods.map(({ method, curves }) => {
    const plateau = curves.map((c) => roundsToWithin(c, c.at(-1).accuracy).first);
    const ofPooled = curves.map((c, i) => roundsToWithin(c, pooledFinal[i]).first);
    return {
      method,
      plateau,
      medianPlateau: medianRound(plateau),
      seedsMeetingTarget: plateau.filter((_, i) => within(plateau, i)).length,
      firstWithin1PointOfPooledFinal: ofPooled,
      medianWithin1PointOfPooledFinal: medianRound(ofPooled),
      seedsMeetingTargetOnPooledFinal: ofPooled.filter((_, i) => within(ofPooled, i)).length,
    };
  });
  return { seeds, pooledFinalAccuracy: pooledFinal, pooledRounds, targetRounds: budgets, rows };
}

/**
 * The server optimizer rows over the seeds: `runs[].server` holds each row's curve at that seed, the same rows in the
 * same order at every seed. Accuracy and AUC are the final checkpoint of the seed-mean curve.
 */
export function serverOptimizerResults(runs, rows) {
  return rows.map((row, k) => {
    const perSeed = runs.map((run) => {
      const mine = run.server?.[k];
      if (!mine || mine.label !== row.label) throw new RangeError(`serverOptimizerResults: seed ${run.seed} has no row "${row.label}"`);
      const last = mine.curve.at(-1);
      return { seed: run.seed, accuracy: last.accuracy, auc: last.auc, curve: mine.curve };
    });
    const curve = meanCurve(perSeed.map((s) => s.curve));
    const last = curve.at(-1);
    return { label: row.label, settings: row.settings, local: row.local, accuracy: last.accuracy, auc: last.auc, perSeed, curve };
  });
}

/**
 * What the server rows add to the results document: the rows (when any ran), how they were run, and every method's
 * rounds to plateau on the seed-mean curves (`curves`: the document's pooled, fedavg and fedprox curves).
 */
export function serverOptimizerDocument(runs, rows, curves) {
  const serverOptimizers = rows.length > 0 ? serverOptimizerResults(runs, rows) : [];
  return {
    ...(rows.length > 0
      ? {
          serverOptimizers,
          serverOptimizerMethod:
            "FedAvg as above (same seeds, data, budget, schedule and aggregation), each round's decrypted average update stepped by the server " +
            'optimizer (shared nextGlobalModel, as every site of a study with serverOptimizer does), its state carried from round to round',
        }
      : {}),
    roundsToPlateau: plateauDocument(
      curves,
      runs.map((run) => ({ seed: run.seed, pooled: run.curves.pooled, fedavg: run.curves.fedavg, fedprox: run.curves.fedprox })),
      serverOptimizers,
    ),
  };
}

/** roundsToPlateau: on the seed-mean curves (`curves`: pooled, fedavg, fedprox) and seed by seed. */
export function plateauDocument(curves, seedCurves, serverOptimizers) {
  return {
    ...plateauRounds({
      pooled: curves.pooled,
      fedavg: curves.fedavg,
      fedprox: curves.fedprox,
      ...Object.fromEntries(serverOptimizers.map((row) => [row.label, row.curve])),
    }),
    perSeed: perSeedPlateaus(seedCurves, serverOptimizers),
  };
}

/** Lines for the console: the server rows' figures and the rounds-to-plateau table. */
export function plateauSummary(results) {
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const lines = results.serverOptimizers?.length ? ['FedAvg with a server optimizer at the sites (seed means, final round):'] : [];
  for (const row of results.serverOptimizers ?? []) {
    lines.push(`  ${row.label}: accuracy ${pct(row.accuracy)}, AUC ${row.auc === null ? '-' : row.auc.toFixed(3)} (seeds ${row.perSeed.map((s) => pct(s.accuracy)).join(', ')})`);
  }
  const p = results.roundsToPlateau;
  lines.push(
    `rounds to plateau (seed means; pooled ends at ${pct(p.pooledFinalAccuracy)} and is within 1 point of it from round ${p.pooledRounds ?? '-'}, ` +
      `so the budget is round ${p.targetRounds ?? '-'}: a plateau by then, or within 1 point of ${pct(p.pooledFinalAccuracy)} by then):`,
  );
  const met = (yes) => (yes ? 'MET' : 'NOT met');
  lines.push(
    ...tableLines([
      ['method', 'final', 'AUC', 'first within 1 pt of own final', 'stays within', 'target', 'first within 1 pt of pooled final', 'target'],
      ...p.rows.map((r) => [
        r.method,
        pct(r.finalAccuracy),
        r.finalAuc === null ? '-' : r.finalAuc.toFixed(3),
        r.firstWithin1PointOfOwnFinal ?? '-',
        r.staysWithin1PointOfOwnFinal ?? '-',
        met(r.meetsTargetOnOwnFinal),
        r.firstWithin1PointOfPooledFinal ?? '-',
        met(r.meetsTargetOnPooledFinal),
      ]),
    ]),
  );
  const s = p.perSeed;
  if (s) {
    const list = (values) => values.map((v) => v ?? '-').join(' ');
    lines.push(`seed by seed (seeds ${s.seeds.join(' ')}; pooled's plateau ${list(s.pooledRounds)}, so the budgets are ${list(s.targetRounds)}):`);
    lines.push(
      ...tableLines([
        ['method', 'plateau (within 1 pt of own final)', 'median', 'seeds within budget', 'within 1 pt of pooled final', 'median', 'seeds within budget'],
        ...s.rows.map((r) => [
          r.method,
          list(r.plateau),
          r.medianPlateau ?? '-',
          `${r.seedsMeetingTarget}/${s.seeds.length}`,
          list(r.firstWithin1PointOfPooledFinal),
          r.medianWithin1PointOfPooledFinal ?? '-',
          `${r.seedsMeetingTargetOnPooledFinal}/${s.seeds.length}`,
        ]),
      ]),
    );
  }
  return lines;
}

/** A table as aligned lines: the first column left-aligned, the others right-aligned. */
export function tableLines(table) {
  const cells = table.map((row) => row.map(String));
  const widths = cells[0].map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  return cells.map((row) => `  ${row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')}`);
}
