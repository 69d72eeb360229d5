// Values from a benchmark's command line, refused with the option's name when they are not what it takes.

/** A finite number from `value` (or `fallback` when the option was not given). */
export function finiteNumber(name, value, fallback) {
  const n = Number(value ?? fallback);
  if (!Number.isFinite(n)) throw new RangeError(`--${name} must be a number, got ${value}`);
  return n;
}

/** An integer >= 1 from `value` (or `fallback` when the option was not given). */
export function positiveInteger(name, value, fallback) {
  const n = Number(value ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--${name} must be a positive integer, got ${value}`);
  return n;
}

/**
 * `--normalise` as a study's preprocessing with that contrast normalisation (the study schema's defaults for the rest),
 * checked by the study schema itself; `shared` is @federa/shared's dist.
 */
export function preprocessingWithNormalise(shared, normalise) {
  const parsed = shared.preprocessingSchema.safeParse({ normalise });
  if (!parsed.success) throw new RangeError(`--normalise must be unit, min-max, z-score or histogram-equalisation, got ${normalise}`);
  return parsed.data;
}

/**
 * The synthetic consortium's size and the training budget, as both learning-quality benchmarks take them: rounds,
 * local epochs per round, images per site, held-out images and sites. `defaults` gives images per site and held-out
 * images as [smoke run, full run]; the smoke run (`quick`) trains 2 rounds of 1 epoch.
 */
export function consortiumOptions(args, quick, defaults) {
  return {
    rounds: positiveInteger('rounds', args.rounds, quick ? 2 : 20),
    epochs: positiveInteger('epochs', args.epochs, quick ? 1 : 2),
    imagesPerSite: positiveInteger('images-per-site', args['images-per-site'], defaults.imagesPerSite[quick ? 0 : 1]),
    holdoutImages: positiveInteger('holdout', args.holdout, defaults.holdout[quick ? 0 : 1]),
    sites: positiveInteger('sites', args.sites),
  };
}
