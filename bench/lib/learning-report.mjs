// Pure helpers for `npm run bench -- learning`: pooling site data, shaping the results JSON and drawing the
// accuracy-by-round plot as SVG. Nothing here trains or touches the disk, so it can be tested quickly.

/** The union of several sites' LabeledImages, in site order (what one process holding all the data would see). */
export function concatImages(sets) {
  if (sets.length === 0) throw new RangeError('concatImages: no sets');
  const [first] = sets;
  const { height, width, channels } = first;
  const perImage = height * width * channels;
  for (const s of sets) {
    if (s.height !== height || s.width !== width || s.channels !== channels) throw new RangeError('concatImages: image shapes differ');
  }
  const count = sets.reduce((n, s) => n + s.count, 0);
  const images = new Float32Array(count * perImage);
  const labels = new Int32Array(count);
  let at = 0;
  for (const s of sets) {
    images.set(s.images.subarray(0, s.count * perImage), at * perImage);
    labels.set(s.labels.subarray(0, s.count), at);
    at += s.count;
  }
  return { images, labels, count, height, width, channels };
}

/** One checkpoint's figures, rounded for the JSON (4 decimals is finer than a held-out set of hundreds resolves). */
export function checkpoint(round, epochs, metrics) {
  const r4 = (x) => (x === null || x === undefined ? null : Math.round(x * 1e4) / 1e4);
  return {
    round,
    epochs,
    accuracy: r4(metrics.accuracy),
    balancedAccuracy: r4(metrics.balancedAccuracy),
    auc: r4(metrics.auc),
  };
}

/**
 * Accuracy (argmax over class probabilities) on each slice of the held-out set, by the hospital profile each image
 * was drawn from: shows which hospitals' case mix a model has learnt. `probabilities` is count x classes,
 * row-major; `sources[i]` names image i's profile. Keys are in first-seen order; values rounded to 4 decimals.
 */
export function accuracyBySource(probabilities, labels, sources, classes) {
  if (sources.length !== labels.length || probabilities.length !== labels.length * classes) {
    throw new RangeError(`accuracyBySource: ${labels.length} labels, ${sources.length} sources and ${probabilities.length / classes} score rows must agree`);
  }
  const tally = new Map();
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (probabilities[i * classes + c] > probabilities[i * classes + best]) best = c;
    const t = tally.get(sources[i]) ?? { right: 0, all: 0 };
    t.all += 1;
    if (best === labels[i]) t.right += 1;
    tally.set(sources[i], t);
  }
  return Object.fromEntries([...tally].map(([source, t]) => [source, Math.round((t.right / t.all) * 1e4) / 1e4]));
}

/** Final figures of a curve: its last checkpoint (the full budget), not its best one, so no peeking at held-out data. */
function final(curve) {
  const last = curve.at(-1);
  if (!last) throw new RangeError('empty curve');
  return { accuracy: last.accuracy, balancedAccuracy: last.balancedAccuracy, auc: last.auc };
}

/**
 * The results document. `curves` holds one array of checkpoints per method (pooled, fedavg, fedprox) and one per
 * site (singleSite: [{ site, images, curve }]). Targets are judged on the final checkpoint: federated (FedAvg and
 * FedProx each) within 2 accuracy points of pooled, and above the best single site.
 */
export function learningResults({ rounds, budget, curves, fedprox, data, environment, seconds, bySource }) {
  const pooled = final(curves.pooled);
  const fedavg = final(curves.fedavg);
  const prox = final(curves.fedprox);
  const singleSite = curves.singleSite.map((s) => ({ site: s.site, images: s.images, ...final(s.curve) }));
  const bestSingle = singleSite.reduce((best, s) => (best === undefined || s.accuracy > best.accuracy ? s : best), undefined);
  const points = (x) => Math.round(x * 1e4) / 1e2;
  const judge = (fed) => ({
    pointsBelowPooled: points(pooled.accuracy - fed.accuracy),
    pointsAboveBestSingleSite: points(fed.accuracy - bestSingle.accuracy),
    federatedWithin2PointsOfPooled: pooled.accuracy - fed.accuracy <= 0.02 + 1e-9,
    federatedAboveBestSingleSite: fed.accuracy > bestSingle.accuracy,
  });
  const targets = { bestSingleSite: bestSingle.site, fedavg: judge(fedavg), fedprox: judge(prox) };
  return {
    pooled,
    singleSite,
    fedavg,
    fedprox: { ...prox, mu: fedprox.mu },
    rounds,
    federatedWithin2PointsOfPooled: targets.fedavg.federatedWithin2PointsOfPooled && targets.fedprox.federatedWithin2PointsOfPooled,
    federatedAboveBestSingleSite: targets.fedavg.federatedAboveBestSingleSite && targets.fedprox.federatedAboveBestSingleSite,
    targets,
    ...(bySource === undefined ? {} : { heldOutAccuracyBySourceHospital: bySource }),
    budget,
    data,
    curves: {
      pooled: curves.pooled,
      fedavg: curves.fedavg,
      fedprox: curves.fedprox,
      singleSite: curves.singleSite.map((s) => ({ site: s.site, curve: s.curve })),
    },
    seconds,
    environment,
  };
}

const escapeXml = (text) => String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]);

/** A round-number tick step giving at most `maxTicks` ticks over `span`. */
function tickStep(span, maxTicks) {
  const raw = span / maxTicks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
}

/**
 * One panel of the chart: grid, ticks, axes and the lines, at vertical offset `top`. y range yMin..yMax in
 * percent; x range xMin..xMax in rounds.
 */
function panel(out, { series, top, height, left, plotW, xMin, xMax, yMin, yMax, xLabel, yLabel }) {
  const plotH = height;
  const sx = (x) => left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y) => top + (1 - (y * 100 - yMin) / (yMax - yMin)) * plotH;
  const f = (v) => v.toFixed(1);
  const yStep = tickStep(yMax - yMin, 8);
  for (let y = Math.ceil(yMin / yStep - 1e-9) * yStep; y <= yMax + 1e-9; y += yStep) {
    const py = sy(y / 100);
    out.push(`<line x1="${left}" y1="${f(py)}" x2="${left + plotW}" y2="${f(py)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${left - 8}" y="${f(py + 4)}" font-size="12" text-anchor="end">${Math.round(y * 10) / 10}</text>`);
  }
  const xStep = Math.max(1, tickStep(xMax - xMin, 10));
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep) {
    const px = sx(x);
    out.push(`<line x1="${f(px)}" y1="${top}" x2="${f(px)}" y2="${top + plotH}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${f(px)}" y="${top + plotH + 18}" font-size="12" text-anchor="middle">${x}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${f(left + plotW / 2)}" y="${top + plotH + 40}" font-size="14" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  out.push(
    `<text x="18" y="${f(top + plotH / 2)}" font-size="14" text-anchor="middle" transform="rotate(-90 18 ${f(top + plotH / 2)})">${escapeXml(yLabel)}</text>`,
  );
  // Lines are clipped to the panel (a zoomed panel cuts off what dips below it). Drawn in order, so the later
  // (headline) series end up on top.
  const clip = `clip-${top}`;
  out.push(`<clipPath id="${clip}"><rect x="${left}" y="${top - 4}" width="${plotW + 4}" height="${plotH + 8}"/></clipPath>`);
  out.push(`<g clip-path="url(#${clip})">`);
  for (const s of series) {
    const points = s.points.filter((p) => p.x >= xMin && p.x <= xMax);
    if (points.length === 0) continue;
    const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(sx(p.x))},${f(sy(p.y))}`).join(' ');
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}"${dash} stroke-linejoin="round"/>`);
    for (const p of points) out.push(`<circle cx="${f(sx(p.x))}" cy="${f(sy(p.y))}" r="${(s.width ?? 2) + 0.5}" fill="${s.color}"/>`);
  }
  out.push('</g>');
}

/**
 * Line chart of accuracy (%) by round as an SVG string. `series`: [{ label, points: [{ x, y }], color, width?,
 * dash? }] with y in 0..1. The top panel shows every round, its y axis starting at a multiple of 5 at or below the
 * lowest point. With `zoomFrom`, a second panel below shows rounds >= zoomFrom with the y axis fitted (whole
 * points) to every series' final value (but those marked `fitZoom: false`) and to the zoomed points of series marked
 * `headline`, so the differences the targets are about (a point or two near the top) can be seen; other lines that
 * dip lower leave the panel.
 */
export function accuracyPlotSvg({ title, xLabel, series, zoomFrom, width: plotWidth = 900, panelHeight = 380 }) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) throw new RangeError('accuracyPlotSvg: no points');
  const left = 70;
  const plotW = plotWidth - left - 230;
  // The legend widens the image for long labels (a server optimizer's settings) rather than running off its edge.
  const width = plotWidth + Math.max(0, Math.ceil(7.5 * Math.max(...series.map((s) => String(s.label).length))) - 160);
  const xMin = Math.min(...all.map((p) => p.x));
  const xMax = Math.max(...all.map((p) => p.x), xMin + 1);
  const lowest = Math.min(...all.map((p) => p.y * 100));
  const yMin = Math.max(0, Math.min(90, Math.floor(lowest / 5) * 5));
  // A series marked fitZoom: false (one that may end far below the rest, such as DP at a small epsilon) does not
  // stretch the zoomed axis; it shows there only where it falls within it.
  const zoomed =
    zoomFrom === undefined
      ? []
      : series
          .filter((s) => s.fitZoom !== false)
          .flatMap((s) => [...(s.headline ? s.points.filter((p) => p.x >= zoomFrom) : []), ...s.points.slice(-1)]);
  const gap = 90;
  const height = 50 + panelHeight + 60 + (zoomed.length > 0 ? gap + panelHeight + 10 : 0);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  // Centred on the whole image: a long title centred over the plot area alone would run off the left edge.
  out.push(`<text x="${(width / 2).toFixed(1)}" y="30" font-size="17" text-anchor="middle">${escapeXml(title)}</text>`);
  panel(out, { series, top: 50, height: panelHeight, left, plotW, xMin, xMax, yMin, yMax: 100, xLabel, yLabel: 'held-out accuracy (%)' });
  if (zoomed.length > 0) {
    const top = 50 + panelHeight + gap;
    const zMin = Math.max(0, Math.floor(Math.min(...zoomed.map((p) => p.y * 100)) - 0.5));
    const zMax = Math.max(zMin + 1, Math.min(100, Math.ceil(Math.max(...zoomed.map((p) => p.y * 100)) + 0.5)));
    out.push(`<text x="${(left + plotW / 2).toFixed(1)}" y="${top - 12}" font-size="15" text-anchor="middle">rounds ${zoomFrom} to ${xMax}, zoomed in</text>`);
    panel(out, { series, top, height: panelHeight, left, plotW, xMin: zoomFrom, xMax: Math.max(xMax, zoomFrom + 1), yMin: zMin, yMax: zMax, xLabel, yLabel: 'held-out accuracy (%)' });
  }
  // Legend to the right of the top panel.
  const lx = left + plotW + 20;
  series.forEach((s, i) => {
    const ly = 62 + i * 24;
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 32}" y2="${ly}" stroke="${s.color}" stroke-width="${s.width ?? 2}"${dash}/>`);
    out.push(`<text x="${lx + 40}" y="${ly + 4}" font-size="13">${escapeXml(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * The benchmark's plot from its results document: single sites in muted colours and thin dashed lines, so the three
 * headline methods stand out; DP rows (if any) in greens, darker for a larger epsilon.
 */
export function learningPlotSvg(results) {
  const siteColours = ['#8c8c8c', '#b07aa1', '#9c755f', '#76b7b2', '#bab0ac', '#edc948'];
  const dpColours = ['#a1d99b', '#74c476', '#31a354', '#006d2c'];
  const serverColours = ['#f28e2b', '#9467bd', '#17becf', '#bcbd22'];
  const points = (curve) => curve.map((c) => ({ x: c.round, y: c.accuracy }));
  const epochs = results.budget.localEpochsPerRound;
  const dpCurves = (results.dp ?? []).filter((r) => r.mode === 'sample').sort((a, b) => a.targetEpsilon - b.targetEpsilon);
  const series = [
    ...results.curves.singleSite.map((s, i) => ({
      label: `${s.site} alone`,
      points: points(s.curve),
      color: siteColours[i % siteColours.length],
      width: 1.5,
      dash: '5 3',
    })),
    ...dpCurves.map((r, i) => ({
      label: `FedAvg + DP-SGD eps ${r.targetEpsilon}`,
      points: points(r.curve),
      color: dpColours[Math.max(0, dpColours.length - dpCurves.length + i) % dpColours.length],
      width: 2,
      dash: '3 2',
      fitZoom: false,
    })),
    // Server optimizer rows, which may end far below the rest: shown in the zoomed panel only where they fall within it.
    ...(results.serverOptimizers ?? []).map((r, i) => ({
      label: r.label,
      points: points(r.curve),
      color: serverColours[i % serverColours.length],
      width: 2,
      dash: '6 2 2 2',
      fitZoom: false,
    })),
    { label: 'pooled', points: points(results.curves.pooled), color: '#222222', width: 2.5, headline: true },
    { label: 'FedAvg', points: points(results.curves.fedavg), color: '#1f77b4', width: 2.5, headline: true },
    { label: `FedProx (mu ${results.fedprox.mu})`, points: points(results.curves.fedprox), color: '#e15759', width: 2.5, dash: '8 4', headline: true },
  ];
  return accuracyPlotSvg({
    title:
      `Held-out accuracy by round: ${results.singleSite.length} non-IID sites, ${epochs} local epoch${epochs === 1 ? '' : 's'} per round` +
      (results.seeds?.length > 1 ? `, mean of ${results.seeds.length} seeds` : ''),
    xLabel: `round (each = ${epochs} epoch${epochs === 1 ? '' : 's'} over the method's own data)`,
    series,
    // The second half of training, where the methods have (mostly) converged and differ by a point or two.
    zoomFrom: Math.max(1, Math.ceil(results.rounds / 2)),
  });
}

/**
 * The DP rows: FedAvg without DP (`none`: the FedAvg headline figures), then FedAvg with DP-SGD at every site for each
 * target epsilon. `runs[].dp`: [{ targetEpsilon, noiseMultiplier, epsilon, curve, sites }], the same targets in the
 * same order at every seed. Accuracy and AUC are seed means of the final checkpoint; `epsilon` is the most any site
 * spent at any seed, the figure the claim holds at for every site.
 */
export function dpResults({ runs, fedavg, delta, clipNorm }) {
  const targets = runs[0].dp.map((d) => d.targetEpsilon);
  for (const run of runs) {
    if (run.dp.map((d) => d.targetEpsilon).join() !== targets.join()) throw new RangeError(`dpResults: seed ${run.seed} has different target epsilons`);
  }
  const rows = targets.map((targetEpsilon, k) => {
    const perSeed = runs.map((run) => {
      const { accuracy, auc } = final(run.dp[k].curve);
      return { seed: run.seed, epsilon: run.dp[k].epsilon, noiseMultiplier: run.dp[k].noiseMultiplier, accuracy, auc, sites: run.dp[k].sites, curve: run.dp[k].curve };
    });
    const curve = meanCurve(perSeed.map((s) => s.curve));
    const { accuracy, auc } = final(curve);
    return {
      mode: 'sample',
      epsilon: Math.max(...perSeed.map((s) => s.epsilon)),
      targetEpsilon,
      delta,
      noiseMultiplier: Math.max(...perSeed.map((s) => s.noiseMultiplier)),
      clipNorm,
      accuracy,
      auc,
      perSeed,
      curve,
    };
  });
  return [{ mode: 'none', epsilon: null, delta: null, accuracy: fedavg.accuracy, auc: fedavg.auc }, ...rows];
}

/** Mean of a list of numbers or nulls (null where every value is null: AUC is undefined on a one-class set). */
function meanOf(values) {
  const present = values.filter((v) => v !== null && v !== undefined);
  return present.length === 0 ? null : Math.round((present.reduce((s, v) => s + v, 0) / present.length) * 1e4) / 1e4;
}

/** Checkpoint-by-checkpoint mean of several runs' curves over the same rounds. */
export function meanCurve(curves) {
  if (curves.length === 0) throw new RangeError('meanCurve: no curves');
  const [first] = curves;
  for (const c of curves) {
    if (c.length !== first.length || c.some((p, i) => p.round !== first[i].round)) throw new RangeError('meanCurve: curves cover different rounds');
  }
  return first.map((p, i) => ({
    round: p.round,
    epochs: p.epochs,
    accuracy: meanOf(curves.map((c) => c[i].accuracy)),
    balancedAccuracy: meanOf(curves.map((c) => c[i].balancedAccuracy)),
    auc: meanOf(curves.map((c) => c[i].auc)),
  }));
}

/** Mean of records with the same shape (nested objects of numbers), leaf by leaf. */
export function meanRecord(records) {
  if (records.length === 0) throw new RangeError('meanRecord: no records');
  const [first] = records;
  if (typeof first === 'number' || first === null) return meanOf(records);
  const keys = Object.keys(first);
  for (const r of records) {
    if (Object.keys(r).join('\u0000') !== keys.join('\u0000')) throw new RangeError(`meanRecord: records differ in keys (${keys.join(', ')} vs ${Object.keys(r).join(', ')})`);
  }
  return Object.fromEntries(keys.map((k) => [k, meanRecord(records.map((r) => r[k]))]));
}

/**
 * The results document over several seeds (each seed draws its own consortium, initial model and shuffles).
 * `runs`: [{ seed, curves, bySource? }] with curves as learningResults takes them. The headline figures, targets
 * and plot are the seed means (curves averaged checkpoint by checkpoint, so the final figures are the mean final
 * accuracies); `seeds` gives every seed's own figures and judgement, and `targetsAtEverySeed` says whether each
 * target held at every seed, not just on average: one seed's held-out set resolves about a point, and a target met
 * on one draw of the data can miss on the next. With `dp` (the DP rows' setup, { delta, clipNorm, ... }) and
 * `runs[].dp` as dpResults takes them, the document also carries the DP rows (`dp`) and that setup (`dpMethod`).
 */
export function multiSeedResults({ runs, ...rest }) {
  if (runs.length === 0) throw new RangeError('multiSeedResults: no runs');
  const sites = runs[0].curves.singleSite.map((s) => s.site);
  for (const run of runs) {
    if (run.curves.singleSite.map((s) => s.site).join() !== sites.join()) throw new RangeError(`multiSeedResults: seed ${run.seed} has different sites`);
  }
  const perSeed = runs.map((run) => ({ seed: run.seed, results: learningResults({ ...rest, curves: run.curves }) }));
  const curves = {
    pooled: meanCurve(runs.map((r) => r.curves.pooled)),
    fedavg: meanCurve(runs.map((r) => r.curves.fedavg)),
    fedprox: meanCurve(runs.map((r) => r.curves.fedprox)),
    singleSite: sites.map((site, i) => ({
      site,
      images: meanOf(runs.map((r) => r.curves.singleSite[i].images)),
      curve: meanCurve(runs.map((r) => r.curves.singleSite[i].curve)),
    })),
  };
  const withSources = runs.every((r) => r.bySource !== undefined);
  const mean = learningResults({ ...rest, curves, ...(withSources ? { bySource: meanRecord(runs.map((r) => r.bySource)) } : {}) });
  const brief = (m) => ({ accuracy: m.accuracy, auc: m.auc });
  const seeds = perSeed.map(({ seed, results: r }) => ({
    seed,
    pooled: brief(r.pooled),
    singleSite: r.singleSite.map((s) => ({ site: s.site, ...brief(s) })),
    fedavg: brief(r.fedavg),
    fedprox: brief(r.fedprox),
    targets: r.targets,
  }));
  const every = (key) => perSeed.every(({ results: r }) => r[key]);
  const { budget, data, curves: meanCurves, seconds, environment, ...headline } = mean;
  // DP rows only when every seed ran them (`dp` here describes their setup: delta, clipNorm and how they were run).
  const withDp = rest.dp !== undefined && runs.every((r) => r.dp !== undefined);
  return {
    ...headline,
    targetsAtEverySeed: { federatedWithin2PointsOfPooled: every('federatedWithin2PointsOfPooled'), federatedAboveBestSingleSite: every('federatedAboveBestSingleSite') },
    seeds,
    ...(withDp ? { dp: dpResults({ runs, fedavg: mean.fedavg, delta: rest.dp.delta, clipNorm: rest.dp.clipNorm }), dpMethod: rest.dp } : {}),
    budget,
    data,
    curves: meanCurves,
    seedCurves: perSeed.map(({ seed, results: r }) => ({ seed, ...r.curves })),
    seconds,
    environment,
  };
}
