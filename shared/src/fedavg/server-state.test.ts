import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { float32ToBytes } from './bytes.js';
import { serverOptimizerSchema, serverStep } from './server-optimizer.js';
import { baseStateSha256, decodeServerState, encodeServerState, initialGlobalModel, nextGlobalModel, ServerStateError } from './server-state.js';
import { applyAggregate } from './vector.js';

const adam = serverOptimizerSchema.parse({ kind: 'fedadam', learningRate: 0.01 });
const weights = Float32Array.of(0.5, -0.25, 1, 0);
// Parameters, the weight (2), then two contribution slots.
const sum = Float64Array.of(0.2, -0.4, 0, 0.02, 2, 1, 1);

describe('the global model state every site keeps', () => {
  it('hashes plain FedAvg weights as their file bytes, and weights with state as both', () => {
    const plain = { weights };
    expect(baseStateSha256(plain)).toBe(createHash('sha256').update(float32ToBytes(weights)).digest('hex'));
    const withState = initialGlobalModel(weights, adam);
    const hash = baseStateSha256(withState, adam);
    expect(hash).not.toBe(baseStateSha256(plain));
    expect(hash).toBe(createHash('sha256').update(float32ToBytes(weights)).update(encodeServerState(adam, withState.server!)).digest('hex'));
    // A state that differs in one moment by one ulp, or the same state after another number of rounds, hashes apart.
    const m = Float64Array.from(withState.server!.m);
    m[3] = Number.MIN_VALUE;
    expect(baseStateSha256({ weights, server: { ...withState.server!, m } }, adam)).not.toBe(hash);
    expect(baseStateSha256({ weights, server: { ...withState.server!, rounds: 1 } }, adam)).not.toBe(hash);
    expect(() => baseStateSha256(withState)).toThrow(/needs the optimizer settings/);
  });

  it('applies FedAvg without a server optimizer and the optimizer\'s step with one, ignoring the contribution slots', () => {
    expect(nextGlobalModel({ weights }, sum, 2)).toEqual({ weights: applyAggregate(weights, sum, 2) });
    const next = nextGlobalModel(initialGlobalModel(weights, adam), sum, 2, adam);
    const expected = serverStep(adam, initialGlobalModel(weights, adam).server!, weights, Float64Array.of(0.1, -0.2, 0, 0.01));
    expect(next.weights).toEqual(expected.weights);
    expect(next.server).toEqual(expected.state);
    expect(() => nextGlobalModel(initialGlobalModel(weights, adam), sum, 1, adam)).toThrow(/expected 6 \(parameters \+ weight \+ 1 contribution slots\)/);
    expect(() => nextGlobalModel({ weights }, sum, 2, adam)).toThrow(/no server optimizer state/);
  });

  it('stores the state little-endian and reads back exactly what it wrote', () => {
    let model = initialGlobalModel(weights, adam);
    for (let r = 0; r < 3; r++) model = nextGlobalModel(model, sum, 2, adam);
    const bytes = encodeServerState(adam, model.server!);
    expect(bytes.byteLength).toBe(32 + 16 * weights.length);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe('FEDSRVST');
    expect(new DataView(bytes.buffer).getFloat64(32, true)).toBe(model.server!.m[0]);
    const back = decodeServerState(bytes, adam, weights.length, 3, 'state');
    expect(back).toEqual(model.server);
    expect(baseStateSha256({ weights: model.weights, server: back }, adam)).toBe(baseStateSha256(model, adam));
  });

  it('refuses a stored state that cannot be this study\'s, saying why', () => {
    const server = initialGlobalModel(weights, adam).server!;
    const bytes = encodeServerState(adam, server);
    const read = (b: Uint8Array, settings = adam, parameters = weights.length, round = 0) => () => decodeServerState(b, settings, parameters, round, 'models/s/1.server-state');
    expect(read(new Uint8Array(10))).toThrow(ServerStateError);
    expect(read(new Uint8Array(10))).toThrow(/models\/s\/1.server-state is not a server optimizer state/);
    expect(read(bytes, serverOptimizerSchema.parse({ kind: 'fedyogi', learningRate: 0.01 }))).toThrow(/state of fedadam, but the study uses fedyogi/);
    expect(read(bytes, adam, 5)).toThrow(/holds 4 parameters, but the model has 5/);
    // A state may have applied fewer steps than rounds (a statistics round applies none), never more.
    expect(read(bytes, adam, 4, 2).call(null).rounds).toBe(0);
    expect(read(encodeServerState(adam, { ...server, rounds: 3 }), adam, 4, 2)).toThrow(/3 steps applied, more than the 2 rounds it is the state after/);
    expect(read(bytes.subarray(0, bytes.byteLength - 8))).toThrow(/truncated or padded/);
    const version = Uint8Array.from(bytes);
    new DataView(version.buffer).setUint32(8, 9, true);
    expect(read(version)).toThrow(/format version 9/);
    const negative = Uint8Array.from(bytes);
    new DataView(negative.buffer).setFloat64(32 + 8 * 4 + 8, -1, true);
    expect(read(negative)).toThrow(/impossible value at parameter 1/);
    const nan = Uint8Array.from(bytes);
    new DataView(nan.buffer).setFloat64(32, Number.NaN, true);
    expect(read(nan)).toThrow(/impossible value at parameter 0/);
  });
});
