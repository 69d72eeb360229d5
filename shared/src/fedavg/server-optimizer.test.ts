import { describe, expect, it } from 'vitest';
import { averageUpdate, initialServerState, serverOptimizerSchema, serverStateHash, serverStep } from './server-optimizer.js';
import { applyAggregate } from './vector.js';

const weights = Float32Array.of(0.5, -0.25, 1);
const delta = Float64Array.of(0.1, -0.2, 0);

describe('server optimizers at the sites', () => {
  it('fedavgm with no momentum and step 1 is plain FedAvg, bit for bit', () => {
    const settings = serverOptimizerSchema.parse({ kind: 'fedavgm', learningRate: 1, beta1: 0 });
    const sum = Float64Array.of(0.3, -0.6, 0, 3);
    const { weights: next } = serverStep(settings, initialServerState(settings, 3), weights, averageUpdate(sum, 3));
    expect(next).toEqual(applyAggregate(weights, sum));
  });

  it('fedavgm accumulates momentum: the second step moves by η(β1·Δ1 + Δ2)', () => {
    const settings = serverOptimizerSchema.parse({ kind: 'fedavgm', learningRate: 0.5, beta1: 0.9 });
    const one = serverStep(settings, initialServerState(settings, 3), weights, delta);
    const two = serverStep(settings, one.state, one.weights, delta);
    expect(two.state.m[0]).toBeCloseTo(0.9 * 0.1 + 0.1, 15);
    expect(two.weights[0]).toBeCloseTo(Math.fround(Math.fround(0.5 + 0.5 * 0.1) + 0.5 * 0.19), 7);
    expect(two.state.rounds).toBe(2);
  });

  it('fedadam and fedadagrad follow Reddi et al.\'s updates from v = τ²', () => {
    const adam = serverOptimizerSchema.parse({ kind: 'fedadam', learningRate: 0.01 });
    const { weights: next, state } = serverStep(adam, initialServerState(adam, 3), weights, delta);
    const m0 = 0.1 * 0.1;
    const v0 = 0.99 * 1e-6 + 0.01 * 0.01;
    expect(state.m[0]).toBeCloseTo(m0, 15);
    expect(state.v[0]).toBeCloseTo(v0, 15);
    expect(next[0]).toBeCloseTo(0.5 + (0.01 * m0) / (Math.sqrt(v0) + 1e-3), 7);
    // A weight whose update is 0 stays put.
    expect(next[2]).toBe(1);
    const adagrad = serverOptimizerSchema.parse({ kind: 'fedadagrad', learningRate: 0.01 });
    expect(serverStep(adagrad, initialServerState(adagrad, 3), weights, delta).state.v[1]).toBeCloseTo(1e-6 + 0.04, 15);
  });

  it('fedyogi grows v towards Δ² additively, never multiplying it away', () => {
    const yogi = serverOptimizerSchema.parse({ kind: 'fedyogi', learningRate: 0.01, beta2: 0.9 });
    const { state } = serverStep(yogi, initialServerState(yogi, 3), weights, delta);
    // v0 = τ² < Δ²: v grows by (1 − β2)·Δ².
    expect(state.v[1]).toBeCloseTo(1e-6 + 0.1 * 0.04, 15);
    const shrunk = serverStep(yogi, { ...state, v: Float64Array.of(1, 1, 1) }, weights, delta);
    expect(shrunk.state.v[1]).toBeCloseTo(1 - 0.1 * 0.04, 15);
  });

  it('gives every site the same weights and state hash for the same rounds, and another hash for another update', () => {
    const settings = serverOptimizerSchema.parse({ kind: 'fedyogi', learningRate: 0.03 });
    const run = (d: Float64Array) => {
      let s = initialServerState(settings, 3);
      let w = weights;
      for (let r = 0; r < 3; r++) ({ weights: w, state: s } = serverStep(settings, s, w, d));
      return { w, hash: serverStateHash(s) };
    };
    const a = run(delta);
    const b = run(Float64Array.from(delta));
    expect(b.w).toEqual(a.w);
    expect(b.hash).toBe(a.hash);
    expect(run(Float64Array.of(0.1, -0.2, 1e-9)).hash).not.toBe(a.hash);
  });

  it('validates its settings and sizes', () => {
    expect(serverOptimizerSchema.safeParse({ kind: 'sgd', learningRate: 1 }).success).toBe(false);
    expect(serverOptimizerSchema.safeParse({ kind: 'fedadam', learningRate: 0 }).success).toBe(false);
    expect(serverOptimizerSchema.safeParse({ kind: 'fedadam', learningRate: 0.1, beta1: 1 }).success).toBe(false);
    const settings = serverOptimizerSchema.parse({ kind: 'fedadam', learningRate: 0.1 });
    expect(() => serverStep(settings, initialServerState(settings, 2), weights, delta)).toThrow(/server step needs 3 values/);
    expect(() => averageUpdate(Float64Array.of(1, 2, 0), 2)).toThrow(/aggregate weight must be positive/);
  });
});
