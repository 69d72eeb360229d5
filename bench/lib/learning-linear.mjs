// The feature-based rows of `npm run bench -- learning`: logistic regression and a linear SVM on hand-crafted image
// features (first-order statistics, edges, GLCM, LBP of the whole image), trained pooled, at each site alone and
// federated with FedAvg through the same encrypted sum as the CNN rows, on the same consortium and held-out set, with
// the same rounds x local epochs, batch size, optimiser, class weights and cosine schedule; only the base learning
// rate is their own (a linear model on features in [-1, 1] wants a far larger step than a CNN).
// Each model runs twice: on the fixed per-feature scale alone (what a study gets today), and with a consortium z-score
// on top (spec option standardize) from the sites' summed feature sums, which is what the encrypted sum can deliver
// once sites contribute their feature statistics; the site's own figures never enter another site's scale.
import { readFile, writeFile } from 'node:fs/promises';
import { checkpoint, concatImages, meanCurve } from './learning-report.mjs';

const SCALINGS = ['fixed', 'consortium-zscore'];

/**
 * Mean and standard deviation of every scaled feature over all sites' training images, from per-site sums only
 * (count, sums, sums of squares: plain sums, which add up through the encrypted sum like model updates).
 */
async function consortiumStatistics(ctx, spec) {
  const parts = [];
  for (const dataset of ctx.siteSets) {
    const { x, columns } = await ctx.train.linearInputs(spec, dataset);
    parts.push(ctx.features.featureSums(x, columns));
  }
  const standardizer = ctx.features.Standardizer.fromSums(ctx.features.addFeatureSums(parts));
  return { mean: Array.from(standardizer.mean), std: Array.from(standardizer.scale) };
}

/**
 * Runs every linear architecture, on each scaling, on one seed's data. `ctx`: { shared, train, features, seed, siteSets, siteIds, holdout,
 * ckks, rounds, epochs, local (trainLocal options without learningRate and seed), learningRateFor(round),
 * callSeed(seed, round, stream), pooledStream, say }. Returns one entry per architecture with its curves.
 */
export async function linearRowsForSeed(architectures, ctx) {
  const out = [];
  if (architectures.length === 0) return out;
  const base = { inputSize: ctx.holdout.height, channels: ctx.holdout.channels, classes: 2, seed: ctx.seed };
  const standardize = await consortiumStatistics(ctx, ctx.shared.parseModelSpec({ architecture: architectures[0], ...base }));
  for (const [architecture, scaling] of architectures.flatMap((a) => SCALINGS.map((s) => [a, s]))) {
    const spec = ctx.shared.parseModelSpec({ architecture, ...base, ...(scaling === 'consortium-zscore' ? { standardize } : {}) });
    const label = `${architecture} (${scaling})`;
    const evaluate = async (weights) => ctx.shared.metricsFromScores(await ctx.train.predictProbabilities(spec, weights, ctx.holdout), ctx.holdout.labels, spec.classes);
    const fmt = (m) => `accuracy ${(100 * m.accuracy).toFixed(1)}%, AUC ${m.auc === null ? '-' : m.auc.toFixed(3)}`;
    const start = checkpoint(0, 0, await evaluate(ctx.shared.initialWeights(spec)));
    const options = (round, stream) => ({ ...ctx.local, learningRate: ctx.learningRateFor(round), seed: ctx.callSeed(ctx.seed, round, stream) });

    const centralised = async (name, dataset, stream) => {
      let weights = ctx.shared.initialWeights(spec);
      const curve = [start];
      for (let round = 1; round <= ctx.rounds; round++) {
        weights = (await ctx.train.trainLocal(spec, weights, dataset, options(round, stream))).weights;
        curve.push(checkpoint(round, round * ctx.epochs, await evaluate(weights)));
      }
      ctx.say(`  ${label} ${name} (seed ${ctx.seed}): ${fmt(curve.at(-1))}`);
      return curve;
    };
    const pooled = await centralised('pooled', concatImages(ctx.siteSets), ctx.pooledStream);
    const singleSite = [];
    for (const [i, dataset] of ctx.siteSets.entries()) singleSite.push({ site: ctx.siteIds[i], images: dataset.count, curve: await centralised(`${ctx.siteIds[i]} alone`, dataset, i) });

    let global = ctx.shared.initialWeights(spec);
    const fedavg = [start];
    let maxAggregateError = 0;
    for (let round = 1; round <= ctx.rounds; round++) {
      const plain = new ctx.shared.UpdateAccumulator(global.length + 1);
      const encrypted = ctx.ckks?.context.createAccumulator(ctx.ckks.keys.publicParams);
      for (const [i, dataset] of ctx.siteSets.entries()) {
        const result = await ctx.train.trainLocal(spec, global, dataset, options(round, i));
        const update = ctx.shared.weightedUpdateVector(global, result.weights, result.samples);
        plain.add(update);
        encrypted?.add(ctx.ckks.context.encryptVector(update, ctx.ckks.keys.secretKey));
      }
      let sum = plain.sum;
      if (encrypted) {
        sum = ctx.ckks.context.decryptVector(encrypted.result(), ctx.ckks.keys.secretKey);
        for (let k = 0; k < sum.length; k++) maxAggregateError = Math.max(maxAggregateError, Math.abs(sum[k] / sum.at(-1) - plain.sum[k] / plain.sum.at(-1)));
      }
      global = ctx.shared.applyAggregate(global, sum);
      fedavg.push(checkpoint(round, round * ctx.epochs, await evaluate(global)));
    }
    ctx.say(`  ${label} FedAvg (seed ${ctx.seed}): ${fmt(fedavg.at(-1))}`);
    // The statistics differ per seed (each draws its own consortium); the row says how they were made instead.
    const { architecture: _a, inputSize: _i, channels: _c, classes: _k, seed: _s, standardize: _z, ...modelOptions } = spec;
    out.push({ architecture, scaling, parameters: ctx.shared.parameterCount(spec), options: modelOptions, curves: { pooled, singleSite, fedavg }, maxAggregateError });
  }
  return out;
}

/**
 * The rows over every seed: per architecture and scaling the seed-mean final figures (the last checkpoint, as the CNN
 * rows) of FedAvg, pooled and each site alone, the mean curves and each seed's own final figures.
 */
export function linearResults(runs, setup) {
  const final = (curve) => {
    const { accuracy, balancedAccuracy, auc } = curve.at(-1);
    return { accuracy, balancedAccuracy, auc };
  };
  const rows = runs[0].linear.map((first, a) => {
    const perSeed = runs.map((run) => run.linear[a]);
    const curves = {
      pooled: meanCurve(perSeed.map((r) => r.curves.pooled)),
      fedavg: meanCurve(perSeed.map((r) => r.curves.fedavg)),
      singleSite: first.curves.singleSite.map((s, i) => ({ site: s.site, curve: meanCurve(perSeed.map((r) => r.curves.singleSite[i].curve)) })),
    };
    const singleSite = curves.singleSite.map((s) => ({ site: s.site, ...final(s.curve) }));
    const best = singleSite.reduce((b, s) => (b === undefined || s.accuracy > b.accuracy ? s : b), undefined);
    return {
      architecture: first.architecture,
      scaling: first.scaling,
      parameters: first.parameters,
      options: first.options,
      fedavg: final(curves.fedavg),
      pooled: final(curves.pooled),
      singleSite,
      bestSingleSite: best.site,
      seeds: runs.map((run, k) => ({
        seed: run.seed,
        fedavg: final(perSeed[k].curves.fedavg),
        pooled: final(perSeed[k].curves.pooled),
        singleSite: perSeed[k].curves.singleSite.map((s) => ({ site: s.site, ...final(s.curve) })),
      })),
      maxAbsAggregateErrorFromEncryption: Math.max(...perSeed.map((r) => r.maxAggregateError)),
      // Seed-mean curves of the two headline methods; each site alone keeps its final figures only.
      curves: { pooled: curves.pooled, fedavg: curves.fedavg },
    };
  });
  return {
    ...setup,
    scalings: {
      fixed: 'each feature mapped from its known range (for [0, 1] pixels) onto [-1, 1], linearly or in a signed log: identical at every site, no data needed',
      'consortium-zscore':
        'the fixed scale, then z = (x - mean) / std with mean and std over every site\'s training images, from the sites\' summed feature sums (spec option standardize)',
    },
    rows,
  };
}

/**
 * Writes `linear` (linearResults) into the results document at `path`, an earlier full run's, after checking that it
 * came from the same setup ({ rounds, epochs, seeds, batchSize, optimizer, classWeights, schedule, aggregation,
 * sites, imagesPerSite, holdoutImages }), so the rows can be refreshed without the CNN rows' long training.
 */
export async function mergeLinearRows(path, linear, setup, seconds) {
  let existing;
  try {
    existing = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`--only-linear adds the linear rows to an earlier full run's results, and ${path} cannot be read (${error.message}); run without --only-linear`);
  }
  const b = existing.budget ?? {};
  const first = existing.data?.perSeed?.[0];
  const same =
    existing.rounds === setup.rounds &&
    b.localEpochsPerRound === setup.epochs &&
    JSON.stringify(b.seeds) === JSON.stringify(setup.seeds) &&
    b.batchSize === setup.batchSize &&
    b.optimizer === setup.optimizer &&
    (b.classWeights ?? 'none') === setup.classWeights &&
    b.learningRateSchedule?.kind === setup.schedule &&
    String(b.aggregation).includes(setup.aggregation === 'ckks' ? 'CKKS' : 'plaintext') &&
    first?.sites?.length === setup.sites &&
    first.sites.every((site) => site.images === setup.imagesPerSite) &&
    first.holdout?.images === setup.holdoutImages &&
    (b.normalise ?? 'unit') === setup.normalise &&
    String(b.images).startsWith('harmonised') === setup.harmonise;
  if (!same) {
    throw new Error(
      `${path} holds results of another setup (rounds, epochs, seeds, batch, optimiser, class weights, schedule, aggregation, normalisation, harmonisation or data); give the same options or run without --only-linear`,
    );
  }
  existing.linear = linear;
  existing.seconds = { ...existing.seconds, linear: Math.round(seconds * 10) / 10 };
  await writeFile(path, `${JSON.stringify(existing, null, 2)}\n`);
  return linear;
}

/** The rows as summary lines for the console. */
export function linearSummaryLines(linear) {
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  const auc = (m) => (m.auc === null ? '-' : m.auc.toFixed(3));
  return [
    'feature-based linear models (seed means, final round):',
    ...linear.rows.map((row) => {
      const best = row.singleSite.find((s) => s.site === row.bestSingleSite);
      return (
        `  ${row.architecture}, ${row.scaling} scale (${row.parameters} parameters): FedAvg ${pct(row.fedavg.accuracy)} AUC ${auc(row.fedavg)}; ` +
        `pooled ${pct(row.pooled.accuracy)} AUC ${auc(row.pooled)}; best single site (${row.bestSingleSite}) ${pct(best.accuracy)}`
      );
    }),
  ];
}
