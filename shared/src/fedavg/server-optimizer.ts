import { createHash } from 'node:crypto';
import { z } from 'zod';

/**
 * Server-side optimizers for federated averaging (Reddi et al. 2021, "Adaptive Federated Optimization"), run at the
 * sites: the coordinator only ever holds the encrypted sum, so every site applies the same step to the same
 * decrypted average update, in float64 with the same operations in the same order, and so arrives at bit-identical
 * weights and state (a hash of which the sites can compare). The average update Δ (mean of the sites'
 * trained − global weights) is the pseudo-gradient's negative:
 *
 * - fedavgm:    m ← β1·m + Δ;                            x ← x + η·m
 * - fedadagrad: m ← β1·m + (1−β1)·Δ; v ← v + Δ²;          x ← x + η·m / (√v + τ)
 * - fedadam:    m ← β1·m + (1−β1)·Δ; v ← β2·v + (1−β2)·Δ²; x ← x + η·m / (√v + τ)
 * - fedyogi:    m ← β1·m + (1−β1)·Δ; v ← v − (1−β2)·Δ²·sign(v − Δ²); x ← x + η·m / (√v + τ)
 *
 * m and v start at 0 (v at τ² for the adaptive ones, as the paper's v₋₁ ≥ τ², so the first steps are not
 * Δ/|Δ|-sized). Plain FedAvg is fedavgm with β1 = 0 and η = 1.
 */
export const SERVER_OPTIMIZERS = ['fedavgm', 'fedadagrad', 'fedadam', 'fedyogi'] as const;
export type ServerOptimizerKind = (typeof SERVER_OPTIMIZERS)[number];

export const serverOptimizerSchema = z
  .object({
    kind: z.enum(SERVER_OPTIMIZERS, { error: `must be one of ${SERVER_OPTIMIZERS.join(', ')}` }),
    /** η, the server's step size on the average update. */
    learningRate: z.number().positive().max(10),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.99),
    /** τ, the adaptive optimizers' degree of adaptivity (smaller: more adaptive). */
    tau: z.number().positive().max(1).default(1e-3),
  })
  .strict();

export type ServerOptimizer = z.output<typeof serverOptimizerSchema>;

/** The optimizer's state after a round: what every site keeps and must agree on. */
export interface ServerOptimizerState {
  /** Rounds applied so far. */
  rounds: number;
  m: Float64Array;
  v: Float64Array;
}

export function initialServerState(settings: ServerOptimizer, parameters: number): ServerOptimizerState {
  const v = new Float64Array(parameters);
  if (settings.kind !== 'fedavgm') v.fill(settings.tau * settings.tau);
  return { rounds: 0, m: new Float64Array(parameters), v };
}

/**
 * One server step: the global weights `weights` (round t) and the average update `delta` give round t+1's weights
 * (float32, as models travel) and the new state. Neither input is changed.
 */
export function serverStep(
  settings: ServerOptimizer,
  state: ServerOptimizerState,
  weights: Float32Array,
  delta: Float64Array,
): { weights: Float32Array; state: ServerOptimizerState } {
  const n = weights.length;
  if (delta.length !== n || state.m.length !== n || state.v.length !== n) {
    throw new RangeError(`server step needs ${n} values of update and state, got ${delta.length}, ${state.m.length} and ${state.v.length}`);
  }
  const { kind, learningRate: eta, beta1, beta2, tau } = settings;
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const d = delta[i] as number;
    const mPrev = state.m[i] as number;
    const vPrev = state.v[i] as number;
    if (kind === 'fedavgm') {
      const mi = beta1 * mPrev + d;
      m[i] = mi;
      out[i] = (weights[i] as number) + eta * mi;
      continue;
    }
    const mi = beta1 * mPrev + (1 - beta1) * d;
    const d2 = d * d;
    const vi = kind === 'fedadagrad' ? vPrev + d2 : kind === 'fedadam' ? beta2 * vPrev + (1 - beta2) * d2 : vPrev - (1 - beta2) * d2 * Math.sign(vPrev - d2);
    m[i] = mi;
    v[i] = vi;
    out[i] = (weights[i] as number) + (eta * mi) / (Math.sqrt(vi) + tau);
  }
  return { weights: out, state: { rounds: state.rounds + 1, m, v } };
}

/** The average update an aggregate carries: Σ wᵢΔᵢ / Σ wᵢ, from the decrypted sum (parameters, then the weight). */
export function averageUpdate(sum: Float64Array, parameters: number): Float64Array {
  const total = sum[parameters] as number;
  if (!(total > 0)) throw new RangeError(`aggregate weight must be positive, got ${total}`);
  const out = new Float64Array(parameters);
  for (let i = 0; i < parameters; i++) out[i] = (sum[i] as number) / total;
  return out;
}

/** SHA-256 of the state's bytes (rounds, m, v): equal at every site that applied the same rounds. */
export function serverStateHash(state: ServerOptimizerState): string {
  const rounds = Buffer.alloc(8);
  rounds.writeBigUInt64LE(BigInt(state.rounds));
  return createHash('sha256')
    .update(rounds)
    .update(new Uint8Array(state.m.buffer, state.m.byteOffset, state.m.byteLength))
    .update(new Uint8Array(state.v.buffer, state.v.byteOffset, state.v.byteLength))
    .digest('hex');
}
