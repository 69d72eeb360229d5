import { createHash } from 'node:crypto';
import { float32ToBytes } from './bytes.js';
import { averageUpdate, initialServerState, SERVER_OPTIMIZERS, serverStep, type ServerOptimizer, type ServerOptimizerState } from './server-optimizer.js';
import { applyAggregate } from './vector.js';

/**
 * The global model as every site holds it after a round: the weights, and for a study with a server optimizer the
 * optimizer's state, which the next round's step needs as much as the weights. Sites cannot ask the coordinator for
 * either (it holds only the encrypted sum), so each keeps both, and the hash of both is what each update names as its
 * base: the coordinator then sees at once when one site's copy differs from the others'.
 */
export interface GlobalModelState {
  weights: Float32Array;
  /** Present exactly when the study has a server optimizer. */
  server?: ServerOptimizerState;
}

/** A stored optimizer state that cannot be the one this study needs (damaged, another study's, another model's). */
export class ServerStateError extends Error {
  override readonly name = 'ServerStateError';
}

/** "FEDSRVST": the stored state's first bytes, so another file put in its place is refused rather than misread. */
const MAGIC = Uint8Array.from('FEDSRVST', (c) => c.charCodeAt(0));
const VERSION = 1;
/** Magic, version, kind, rounds, parameter count. */
const HEADER_BYTES = 8 + 4 + 4 + 8 + 8;

/**
 * The state as bytes, little-endian whatever the host: magic, format version (u32), optimizer kind (u32 index into
 * SERVER_OPTIMIZERS), rounds applied (u64), parameters n (u64), then m and v as n float64 each. The same bytes at
 * every site that applied the same rounds, so they are also what the base state hash covers.
 */
export function encodeServerState(settings: ServerOptimizer, state: ServerOptimizerState): Uint8Array {
  const n = state.m.length;
  if (state.v.length !== n) throw new RangeError(`optimizer state has ${n} first moments but ${state.v.length} second moments`);
  const out = new Uint8Array(HEADER_BYTES + 16 * n);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, SERVER_OPTIMIZERS.indexOf(settings.kind), true);
  view.setBigUint64(16, BigInt(state.rounds), true);
  view.setBigUint64(24, BigInt(n), true);
  for (let i = 0; i < n; i++) view.setFloat64(HEADER_BYTES + 8 * i, state.m[i] as number, true);
  const vAt = HEADER_BYTES + 8 * n;
  for (let i = 0; i < n; i++) view.setFloat64(vAt + 8 * i, state.v[i] as number, true);
  return out;
}

/**
 * Reads a stored state back for a study with `settings` and a model of `parameters` weights, after round `round`
 * (which applied at most `round` steps: a round that carries no model update, such as a statistics round, applies
 * none). Anything that does not fit (another format, optimizer or size; more steps than rounds; a value no step can
 * produce) is refused, naming `what`: a wrong state would silently give this site a model no other site has.
 */
export function decodeServerState(bytes: Uint8Array, settings: ServerOptimizer, parameters: number, round: number, what: string): ServerOptimizerState {
  const fail = (why: string): never => {
    throw new ServerStateError(`${what} ${why}`);
  };
  if (bytes.byteLength < HEADER_BYTES || !MAGIC.every((b, i) => bytes[i] === b)) fail('is not a server optimizer state');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== VERSION) fail(`has format version ${version}; this agent reads version ${VERSION}`);
  const kind = SERVER_OPTIMIZERS[view.getUint32(12, true)];
  if (kind !== settings.kind) fail(`is the state of ${kind ?? 'an unknown optimizer'}, but the study uses ${settings.kind}`);
  const stored = view.getBigUint64(16, true);
  if (stored > BigInt(round)) fail(`has ${stored} steps applied, more than the ${round} rounds it is the state after`);
  const rounds = Number(stored);
  const n = view.getBigUint64(24, true);
  if (n !== BigInt(parameters)) fail(`holds ${n} parameters, but the model has ${parameters}`);
  if (bytes.byteLength !== HEADER_BYTES + 16 * parameters) fail(`is ${bytes.byteLength} bytes, expected ${HEADER_BYTES + 16 * parameters} (truncated or padded)`);
  const m = new Float64Array(parameters);
  const v = new Float64Array(parameters);
  const vAt = HEADER_BYTES + 8 * parameters;
  for (let i = 0; i < parameters; i++) {
    const mi = view.getFloat64(HEADER_BYTES + 8 * i, true);
    const vi = view.getFloat64(vAt + 8 * i, true);
    // Every step keeps m finite and v finite and non-negative; anything else is damage.
    if (!Number.isFinite(mi) || !Number.isFinite(vi) || vi < 0) fail(`has an impossible value at parameter ${i} (m ${mi}, v ${vi})`);
    m[i] = mi;
    v[i] = vi;
  }
  return { rounds, m, v };
}

/**
 * SHA-256 (hex) of a global model as a site holds it. Plain FedAvg: the hash of the weights' little-endian float32
 * bytes, the same as the model file's. With a server optimizer: the hash of those bytes followed by
 * encodeServerState's, so two sites agree only when both the weights and the state they will step from agree.
 */
export function baseStateSha256(model: GlobalModelState, settings?: ServerOptimizer): string {
  const hash = createHash('sha256').update(float32ToBytes(model.weights));
  if (model.server) {
    if (!settings) throw new RangeError('a model with server optimizer state needs the optimizer settings to hash it');
    hash.update(encodeServerState(settings, model.server));
  }
  return hash.digest('hex');
}

/** Round 0's model: the initial weights, and for a study with a server optimizer its initial state. */
export function initialGlobalModel(weights: Float32Array, settings?: ServerOptimizer): GlobalModelState {
  return settings ? { weights, server: initialServerState(settings, weights.length) } : { weights };
}

/**
 * The next round's global model from the previous one and the round's decrypted sum (parameters, the weight, then
 * `contributionSlots` slots). Without a server optimizer, FedAvg: previous + Σ wᵢΔᵢ / Σ wᵢ. With one, its step on
 * that average update. Deterministic (float64, the same operations in the same order), so every site that decrypted
 * the same sum gets the same bits.
 */
export function nextGlobalModel(previous: GlobalModelState, sum: Float64Array, contributionSlots: number, settings?: ServerOptimizer): GlobalModelState {
  const parameters = previous.weights.length;
  if (!settings) return { weights: applyAggregate(previous.weights, sum, contributionSlots) };
  if (sum.length !== parameters + 1 + contributionSlots) {
    throw new RangeError(`aggregate has ${sum.length} values, expected ${parameters + 1 + contributionSlots} (parameters + weight + ${contributionSlots} contribution slots)`);
  }
  if (!previous.server) throw new RangeError('the previous global model has no server optimizer state');
  const { weights, state } = serverStep(settings, previous.server, previous.weights, averageUpdate(sum, parameters));
  return { weights, server: state };
}
