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
export function learningResults({ rounds, budget, curves, fedprox, data, environment, seconds }) {
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
 * Line chart of accuracy (%) by round as an SVG string. `series`: [{ label, points: [{ x, y }], color, width?,
 * dash? }] with y in 0..1. The y axis starts at a round 5 % below the lowest point, so the differences that
 * matter near the top are visible; the axis labels say where it starts.
 */
export function accuracyPlotSvg({ title, xLabel, series, width = 900, height = 540 }) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) throw new RangeError('accuracyPlotSvg: no points');
  const margin = { left: 70, right: 230, top: 50, bottom: 60 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const xMin = Math.min(0, ...all.map((p) => p.x));
  const xMax = Math.max(...all.map((p) => p.x), xMin + 1);
  const lowest = Math.min(...all.map((p) => p.y * 100));
  const yMin = Math.max(0, Math.min(90, Math.floor(lowest / 5) * 5));
  const yMax = 100;
  const sx = (x) => margin.left + ((x - xMin) / (xMax - xMin)) * plotW;
  const sy = (y) => margin.top + (1 - (y * 100 - yMin) / (yMax - yMin)) * plotH;
  const f = (v) => v.toFixed(1);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${f(margin.left + plotW / 2)}" y="30" font-size="18" text-anchor="middle">${escapeXml(title)}</text>`);
  // Grid and ticks.
  const yStep = tickStep(yMax - yMin, 8);
  for (let y = yMin; y <= yMax + 1e-9; y += yStep) {
    const py = sy(y / 100);
    out.push(`<line x1="${margin.left}" y1="${f(py)}" x2="${margin.left + plotW}" y2="${f(py)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${margin.left - 8}" y="${f(py + 4)}" font-size="12" text-anchor="end">${Math.round(y * 10) / 10}</text>`);
  }
  const xStep = Math.max(1, tickStep(xMax - xMin, 10));
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep) {
    const px = sx(x);
    out.push(`<line x1="${f(px)}" y1="${margin.top}" x2="${f(px)}" y2="${margin.top + plotH}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${f(px)}" y="${margin.top + plotH + 18}" font-size="12" text-anchor="middle">${x}</text>`);
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${f(margin.left + plotW / 2)}" y="${height - 15}" font-size="14" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  out.push(
    `<text x="18" y="${f(margin.top + plotH / 2)}" font-size="14" text-anchor="middle" transform="rotate(-90 18 ${f(margin.top + plotH / 2)})">held-out accuracy (%)</text>`,
  );
  // Lines, drawn in order so the later (headline) series end up on top.
  for (const s of series) {
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${f(sx(p.x))},${f(sy(p.y))}`).join(' ');
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}"${dash} stroke-linejoin="round"/>`);
    for (const p of s.points) out.push(`<circle cx="${f(sx(p.x))}" cy="${f(sy(p.y))}" r="${(s.width ?? 2) + 0.5}" fill="${s.color}"/>`);
  }
  // Legend to the right of the plot.
  const lx = margin.left + plotW + 20;
  series.forEach((s, i) => {
    const ly = margin.top + 12 + i * 24;
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 32}" y2="${ly}" stroke="${s.color}" stroke-width="${s.width ?? 2}"${dash}/>`);
    out.push(`<text x="${lx + 40}" y="${ly + 4}" font-size="13">${escapeXml(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
