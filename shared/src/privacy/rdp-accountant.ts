/**
 * Rényi DP accounting for the Poisson-subsampled Gaussian mechanism (DP-SGD / DP-FedAvg).
 *
 * A port of the analysis in Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled
 * Gaussian Mechanism" (arXiv:1908.10530), as implemented by TensorFlow Privacy's `rdp_accountant.py`
 * and Opacus's `opacus/accountants/analysis/rdp.py`. Everything runs in log space: A_alpha overflows a
 * double long before the RDP it yields is large.
 */

/** Opacus's `RDPAccountant.DEFAULT_ALPHAS`: `[1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))`. */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10.0),
  ...Array.from({ length: 52 }, (_, i) => 12 + i),
]);

export interface PrivacySpent {
  epsilon: number;
  /** The RDP order at which the bound is tightest; NaN when no order gives a finite bound or nothing was spent. */
  order: number;
}

// ---------- log-space arithmetic ----------

function logAdd(logx: number, logy: number): number {
  const a = Math.min(logx, logy);
  const b = Math.max(logx, logy);
  if (a === -Infinity) return b;
  return Math.log1p(Math.exp(a - b)) + b;
}

function logSub(logx: number, logy: number): number {
  if (logx < logy) {
    // Same refusal as the reference code: a negative partial sum means the series went wrong.
    throw new Error(`log-space subtraction would be negative (${logx} < ${logy})`);
  }
  if (logy === -Infinity) return logx;
  if (logx === logy) return -Infinity;
  const d = logx - logy;
  // expm1 overflows past ~709; exp(y) is then negligible next to exp(x).
  return d > 700 ? logx : Math.log(Math.expm1(d)) + logy;
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/** erf(x) for 0 <= x < ~6 by the all-positive series e^{-x^2} sum 2^n x^{2n+1} / (2n+1)!!, free of cancellation. */
function erfSeries(x: number): number {
  const x2 = x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
}

/** log(erfc(x) * e^{x^2} * sqrt(pi)) for x >= 2, by the Laplace continued fraction (modified Lentz). */
function logScaledErfcCf(x: number): number {
  const tiny = 1e-300;
  let f = x;
  let c = f;
  let d = 0;
  for (let k = 1; k < 5000; k++) {
    const a = k / 2;
    d = x + a * d;
    d = Math.abs(d) < tiny ? 1 / tiny : 1 / d;
    c = x + a / c;
    if (Math.abs(c) < tiny) c = tiny;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return -Math.log(f);
}

/** log(erfc(x)), accurate in the far tail where erfc underflows (TF/Opacus use scipy's log_ndtr). */
function logErfc(x: number): number {
  if (x >= 2) return -x * x - LOG_SQRT_PI + logScaledErfcCf(x);
  if (x >= 0) return Math.log1p(-erfSeries(x));
  const ax = -x;
  const erf = ax < 2 ? erfSeries(ax) : 1 - Math.exp(-ax * ax - LOG_SQRT_PI + logScaledErfcCf(ax));
  return Math.log1p(erf);
}

// ---------- log(A_alpha), 0 < q < 1, sigma > 0 ----------

/** Exact binomial expansion for integer alpha (TF `_compute_log_a_int`). */
function logAInt(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  let logA = -Infinity;
  let logBinom = 0; // log C(alpha, i), built up term by term so no factorial ever overflows
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i);
    const s = logBinom + i * logQ + (alpha - i) * log1mQ + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, s);
  }
  return logA;
}

const MAX_SERIES_TERMS = 1_000_000;

/** Two-sided series for fractional alpha (TF `_compute_log_a_frac`), stopped once terms fall below e^-30. */
function logAFrac(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const s2 = sigma * sigma;
  const z0 = s2 * Math.log(1 / q - 1) + 0.5;
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  let logCoef = 0; // log |C(alpha, i)|
  let coefPositive = true;
  for (let i = 0; i < MAX_SERIES_TERMS; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i;
      logCoef += Math.log(Math.abs(factor));
      if (factor < 0) coefPositive = !coefPositive;
    }
    const j = alpha - i;
    const logT0 = logCoef + i * logQ + j * log1mQ;
    const logT1 = logCoef + j * logQ + i * log1mQ;
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    const logS0 = logT0 + (i * i - i) / (2 * s2) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * s2) + logE1;
    if (coefPositive) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) return logAdd(logA0, logA1);
  }
  throw new Error(`RDP series did not converge for q=${q}, sigma=${sigma}, order=${alpha}`);
}

function rdpOneStep(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (sigma === 0) return Infinity;
  if (q === 1) return alpha / (2 * sigma * sigma);
  if (alpha === Infinity) return Infinity;
  const logA = Number.isInteger(alpha) ? logAInt(q, sigma, alpha) : logAFrac(q, sigma, alpha);
  // RDP is never negative; at very large sigma round-off can dip below 0, and rounding up is conservative.
  return Math.max(0, logA / (alpha - 1));
}

// ---------- validation ----------

function checkOrders(orders: readonly number[]): void {
  if (orders.length === 0) throw new RangeError('orders must not be empty');
  orders.forEach((a, i) => {
    if (!(a > 1)) throw new RangeError(`orders[${i}] must be > 1, got ${a}`);
  });
}

function checkDelta(delta: number): void {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`delta must be in (0, 1), got ${delta}`);
}

function checkRdp(orders: readonly number[], rdp: readonly number[]): void {
  checkOrders(orders);
  if (rdp.length !== orders.length) throw new RangeError(`rdp has ${rdp.length} values but orders has ${orders.length}`);
  rdp.forEach((r, i) => {
    if (r < 0) throw new RangeError(`rdp[${i}] must be >= 0, got ${r}`);
  });
}

// ---------- public API ----------

/**
 * RDP at each order of `steps` compositions of the Poisson-subsampled Gaussian mechanism with sampling
 * rate `q` and noise multiplier `noiseMultiplier` (noise std / L2 sensitivity).
 */
export function subsampledGaussianRdp(
  q: number,
  noiseMultiplier: number,
  steps: number,
  orders: readonly number[] = DEFAULT_RDP_ORDERS,
): number[] {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`q (sampling rate) must be in [0, 1], got ${q}`);
  if (!(noiseMultiplier >= 0 && Number.isFinite(noiseMultiplier))) {
    throw new RangeError(`noiseMultiplier must be a finite number >= 0, got ${noiseMultiplier}`);
  }
  if (!(Number.isSafeInteger(steps) && steps >= 0)) {
    throw new RangeError(`steps must be a non-negative integer, got ${steps}`);
  }
  checkOrders(orders);
  // Zero steps spend nothing; checked first so Infinity * 0 cannot make NaN.
  if (steps === 0) return orders.map(() => 0);
  return orders.map((alpha) => rdpOneStep(q, noiseMultiplier, alpha) * steps);
}

/** Elementwise sum: RDP composes additively across mechanisms evaluated on the same orders. */
export function addRdp(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`cannot add RDP vectors of length ${a.length} and ${b.length}`);
  return a.map((x, i) => x + (b[i] as number));
}

function argminEpsilon(orders: readonly number[], eps: readonly number[]): PrivacySpent {
  let best: PrivacySpent = { epsilon: Infinity, order: Number.NaN };
  eps.forEach((e, i) => {
    // NaN (e.g. an infinite order) is skipped, as numpy's nanargmin does in the reference code.
    if (!Number.isNaN(e) && (Number.isNaN(best.order) || e < best.epsilon)) {
      best = { epsilon: e, order: orders[i] as number };
    }
  });
  return best;
}

/**
 * (epsilon, delta)-DP from RDP by Balle et al. 2020, "Hypothesis testing interpretations and Rényi
 * differential privacy", Thm 21 — the conversion Opacus's `get_privacy_spent` uses. Negative epsilon
 * (possible for large delta) is clamped to 0, as TF Privacy does.
 */
export function rdpToEpsilon(orders: readonly number[], rdp: readonly number[], delta: number): PrivacySpent {
  checkRdp(orders, rdp);
  checkDelta(delta);
  const logDelta = Math.log(delta);
  const eps = orders.map(
    (a, i) => (rdp[i] as number) - (logDelta + Math.log(a)) / (a - 1) + Math.log((a - 1) / a),
  );
  const best = argminEpsilon(orders, eps);
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

/** The older, looser conversion `rdp - log(delta) / (order - 1)` (Mironov 2017, Prop. 3; TF Privacy before 2021). */
export function rdpToEpsilonClassic(orders: readonly number[], rdp: readonly number[], delta: number): PrivacySpent {
  checkRdp(orders, rdp);
  checkDelta(delta);
  const logDelta = Math.log(delta);
  return argminEpsilon(
    orders,
    orders.map((a, i) => (rdp[i] as number) - logDelta / (a - 1)),
  );
}

export interface EpsilonSpentOptions {
  sampleRate: number;
  noiseMultiplier: number;
  steps: number;
  delta: number;
  orders?: readonly number[];
}

/**
 * Epsilon (Balle et al. conversion) after `steps` rounds of the subsampled Gaussian mechanism. With no
 * steps or sampling rate 0 nothing about any record is released, so epsilon is exactly 0; the RDP
 * conversion alone would report its floor (about 0.1 at delta 1e-5) there.
 */
export function epsilonSpent(opts: EpsilonSpentOptions): PrivacySpent {
  const orders = opts.orders ?? DEFAULT_RDP_ORDERS;
  const rdp = subsampledGaussianRdp(opts.sampleRate, opts.noiseMultiplier, opts.steps, orders);
  const spent = rdpToEpsilon(orders, rdp, opts.delta);
  return opts.steps === 0 || opts.sampleRate === 0 ? { epsilon: 0, order: Number.NaN } : spent;
}

export interface NoiseForEpsilonOptions extends Omit<EpsilonSpentOptions, 'noiseMultiplier'> {
  targetEpsilon: number;
  /** Stop once the achieved epsilon is within this of the target (Opacus's `epsilon_tolerance`). */
  tolerance?: number;
}

/** Opacus's `MAX_SIGMA`: beyond this the budget is treated as unreachable. */
const MAX_NOISE_MULTIPLIER = 1e6;

/**
 * The smallest noise multiplier (to within `tolerance` in epsilon) whose epsilon is <= `targetEpsilon`,
 * by the same doubling-then-bisection as Opacus's `get_noise_multiplier`, so results agree with it.
 */
export function noiseMultiplierForEpsilon(opts: NoiseForEpsilonOptions): number {
  const { targetEpsilon, delta, sampleRate, steps } = opts;
  const tolerance = opts.tolerance ?? 0.01;
  if (!(targetEpsilon > 0 && Number.isFinite(targetEpsilon))) {
    throw new RangeError(`targetEpsilon must be a finite number > 0, got ${targetEpsilon}`);
  }
  if (!(tolerance > 0 && Number.isFinite(tolerance))) {
    throw new RangeError(`tolerance must be a finite number > 0, got ${tolerance}`);
  }
  const eps = (sigma: number): number => epsilonSpent({ ...opts, noiseMultiplier: sigma }).epsilon;
  // Also validates every argument. Only when nothing is sampled or nothing is run does no noise suffice.
  if (eps(0) <= targetEpsilon) return 0;

  let sigmaLow = 0;
  let sigmaHigh = 10;
  let epsHigh = Infinity;
  while (epsHigh > targetEpsilon) {
    sigmaHigh *= 2;
    if (sigmaHigh > MAX_NOISE_MULTIPLIER) {
      throw new RangeError(
        `targetEpsilon ${targetEpsilon} is unreachable at delta=${delta}, sampleRate=${sampleRate}, steps=${steps}: ` +
          `noiseMultiplier ${sigmaHigh / 2} still gives epsilon ${epsHigh}; raise epsilon or delta, or widen the orders`,
      );
    }
    epsHigh = eps(sigmaHigh);
  }
  // The interval guard stops a flat epsilon curve (e.g. a floor set by the orders) from looping forever.
  while (targetEpsilon - epsHigh > tolerance && sigmaHigh - sigmaLow > 1e-12 * sigmaHigh) {
    const sigma = (sigmaLow + sigmaHigh) / 2;
    const e = eps(sigma);
    if (e < targetEpsilon) {
      sigmaHigh = sigma;
      epsHigh = e;
    } else {
      sigmaLow = sigma;
    }
  }
  return sigmaHigh;
}
