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
