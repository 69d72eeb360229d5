import { describe, it, expect } from 'vitest';
import {
  addRdp,
  DEFAULT_RDP_ORDERS,
  epsilonSpent,
  noiseMultiplierForEpsilon,
  rdpToEpsilon,
  rdpToEpsilonClassic,
  subsampledGaussianRdp,
} from './index.js';

// Expected values are PUBLISHED numbers, each with its source. Abbreviations:
//   TFP = github.com/tensorflow/privacy, tensorflow_privacy/privacy/analysis/
//   OPC = github.com/pytorch/opacus (snapshot 4d0ebc8, 2025-09)
// The required bar is 1% relative; values the source prints to many digits are also held tighter.
function expectRel(actual: number, expected: number, rel = 0.01): void {
  expect(Math.abs(actual - expected) / Math.abs(expected)).toBeLessThanOrEqual(rel);
}

function single(q: number, sigma: number, steps: number, order: number): number {
  return subsampledGaussianRdp(q, sigma, steps, [order])[0] as number;
}

describe('DEFAULT_RDP_ORDERS', () => {
  it("are Opacus's RDPAccountant.DEFAULT_ALPHAS", () => {
    // OPC opacus/accountants/rdp.py: [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    expect(DEFAULT_RDP_ORDERS).toHaveLength(151);
    expect(DEFAULT_RDP_ORDERS[0]).toBe(1.1);
    expect(DEFAULT_RDP_ORDERS[98]).toBe(10.9);
    expect(DEFAULT_RDP_ORDERS[99]).toBe(12);
    expect(DEFAULT_RDP_ORDERS[150]).toBe(63);
    expect(Object.isFrozen(DEFAULT_RDP_ORDERS)).toBe(true);
  });
});

describe('subsampledGaussianRdp', () => {
  it('matches compute_rdp point values at an integer order', () => {
    // TFP rdp_accountant_test.py, test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) ~= 0.07737 (places=5).
    expectRel(single(0.1, 2, 10, 5), 0.07737, 1e-4);
  });

  it('matches compute_rdp at fractional and integer orders (test_compute_rdp_sequence)', () => {
    // TFP rdp_accountant_test.py, test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, orders), rtol=1e-4.
    const orders = [1.5, 2.5, 5, 50, 100, Infinity];
    const expected = [6.5007e-4, 1.0854e-3, 2.1808e-3, 2.3846e-2, 1.6742e2];
    const got = subsampledGaussianRdp(0.01, 2.5, 50, orders);
    expected.forEach((e, i) => expectRel(got[i] as number, e, 1e-4));
    expect(got[5]).toBe(Infinity);
  });

  it('gives 0 with no sampling and the plain Gaussian alpha / (2 sigma^2) with q = 1', () => {
    // TFP rdp_accountant_test.py, test_compute_rdp_no_data: compute_rdp(0, 10, 1, 20) == 0.
    expect(single(0, 10, 1, 20)).toBe(0);
    // TFP rdp_accountant_test.py, test_compute_rdp_no_sampling: compute_rdp(1, 10, 1, 20) == 0.1.
    expectRel(single(1, 10, 1, 20), 0.1, 1e-12);
    // Closed form (Mironov 2017, Prop. 7) at fractional orders and over several steps.
    const orders = [1.5, 2.75, 32];
    subsampledGaussianRdp(1, 1.3, 7, orders).forEach((r, i) => {
      const a = orders[i] as number;
      expectRel(r, (7 * a) / (2 * 1.3 * 1.3), 1e-12);
    });
  });

  it('gives Infinity without noise and 0 for zero steps', () => {
    expect(subsampledGaussianRdp(0.5, 0, 1, [2, 2.5])).toEqual([Infinity, Infinity]);
    expect(subsampledGaussianRdp(0.5, 0, 0, [2, 2.5])).toEqual([0, 0]);
  });

  it('is monotone in order and steps, and falls as noise rises', () => {
    const r = subsampledGaussianRdp(0.02, 1.1, 100);
    for (let i = 1; i < r.length; i++) expect(r[i]).toBeGreaterThanOrEqual(r[i - 1] as number);
    expectRel(single(0.02, 1.1, 300, 7.5), 3 * single(0.02, 1.1, 100, 7.5), 1e-12);
    expect(single(0.02, 2, 1, 7.5)).toBeLessThan(single(0.02, 1, 1, 7.5));
  });

  it('refuses bad arguments with a RangeError naming them', () => {
    expect(() => subsampledGaussianRdp(1.5, 1, 1)).toThrow(/q \(sampling rate\).*1\.5/);
    expect(() => subsampledGaussianRdp(-0.1, 1, 1)).toThrow(RangeError);
    expect(() => subsampledGaussianRdp(Number.NaN, 1, 1)).toThrow(RangeError);
    expect(() => subsampledGaussianRdp(0.1, -1, 1)).toThrow(/noiseMultiplier.*-1/);
    expect(() => subsampledGaussianRdp(0.1, 1, 2.5)).toThrow(/steps.*2\.5/);
    expect(() => subsampledGaussianRdp(0.1, 1, -1)).toThrow(RangeError);
    expect(() => subsampledGaussianRdp(0.1, 1, 1, [2, 1])).toThrow(/orders\[1\].*got 1/);
    expect(() => subsampledGaussianRdp(0.1, 1, 1, [])).toThrow(RangeError);
  });
});

describe('RDP to (epsilon, delta)', () => {
  const compositionOrders = [1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256];
  const composed = addRdp(
    subsampledGaussianRdp(1e-4, 0.4, 40000, compositionOrders),
    subsampledGaussianRdp(0.1, 2, 100, compositionOrders),
  );

  it('reproduces the composition example under the classic conversion', () => {
    // TFP rdp_accountant_test.py, test_check_composition (as of commit e19c53a, 2020, before the
    // improved conversion): eps 8.509656 (places=5), opt_order 2.5, at delta 1e-5.
    const { epsilon, order } = rdpToEpsilonClassic(compositionOrders, composed, 1e-5);
    expectRel(epsilon, 8.509656, 1e-6);
    expect(order).toBe(2.5);
    // Same test today: the improved conversion must stay at or below that bound.
    expect(rdpToEpsilon(compositionOrders, composed, 1e-5).epsilon).toBeLessThanOrEqual(8.509656);
  });

  it('reproduces the older get_privacy_spent example under the classic conversion', () => {
    // TFP rdp_accountant_test.py, test_get_privacy_spent_check_target_delta (before commit be8175b, 2020):
    // compute_rdp(0.01, 4, 10000, range(2, 33)), delta 1e-5 -> eps 1.258575 (places=5), opt_order 20.
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const { epsilon, order } = rdpToEpsilonClassic(orders, subsampledGaussianRdp(0.01, 4, 10000, orders), 1e-5);
    expectRel(epsilon, 1.258575, 1e-5);
    expect(order).toBe(20);
  });

  it('converts constant RDP and the exact-(1, 1e-6) Gaussian with the Balle et al. bound', () => {
    // TFP rdp_accountant_test.py, test_get_privacy_spent_check_target_delta (improved conversion):
    // constant rdp 1.1 on orders 2..32, delta 1e-5 -> eps 1.32783806176, opt_order 32.
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const c = rdpToEpsilon(orders, orders.map(() => 1.1), 1e-5);
    expectRel(c.epsilon, 1.32783806176, 1e-9);
    expect(c.order).toBe(32);
    // Same test: q = 1, sigma 4.530877117 is exactly (1, 1e-6)-DP; orders 0.001 * i (TF starts at i = 1000,
    // i.e. order 1, which we refuse; it is never the optimum).
    const fine = Array.from({ length: 98999 }, (_, i) => 0.001 * (i + 1001));
    const g = rdpToEpsilon(fine, subsampledGaussianRdp(1, 4.530877117, 1, fine), 1e-6);
    expectRel(g.epsilon, 1, 1e-6);
  });

  it('matches the Opacus RDP accountant and its module doctest', () => {
    // OPC opacus/tests/accountants_test.py, AccountingTest.test_rdp_accountant: sigma 1.5, sample rate 0.04,
    // steps int(90 / 0.04) = 2250, delta 1e-5, default alphas -> epsilon 7.32911117143.
    const spent = epsilonSpent({ sampleRate: 0.04, noiseMultiplier: 1.5, steps: 2250, delta: 1e-5 });
    expectRel(spent.epsilon, 7.32911117143, 1e-8);
    // OPC opacus/accountants/analysis/rdp.py module docstring: (q, sigma, steps) = (1e-5, 1.0, 10) then
    // (1e-4, 3.0, 4), orders 2..32, delta 1e-5 -> (0.336, 23).
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const rdp = addRdp(subsampledGaussianRdp(1e-5, 1, 10, orders), subsampledGaussianRdp(1e-4, 3, 4, orders));
    const doc = rdpToEpsilon(orders, rdp, 1e-5);
    expectRel(doc.epsilon, 0.336, 0.01);
    expect(doc.order).toBe(23);
  });

  it('matches compute_dp_sgd_privacy (improved conversion)', () => {
    // TFP compute_dp_sgd_privacy_test.py, test_compute_dp_sgd_privacy (Test0..Test2), with
    // compute_dp_sgd_privacy_lib.py's orders and steps = ceil(epochs * n / batch_size).
    const orders = [1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, ...Array.from({ length: 59 }, (_, i) => i + 5), 128, 256, 512];
    const cases: Array<[number, number, number, number, number, number, number]> = [
      [60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19],
      [100000, 100, 1.0, 30, 1e-7, 1.4154988495444845, 13],
      [100000000, 1024, 0.1, 10, 1e-7, 5907982.31138195, 1.25],
    ];
    for (const [n, batch, sigma, epochs, delta, eps, order] of cases) {
      const steps = Math.ceil((epochs * n) / batch);
      const got = epsilonSpent({ sampleRate: batch / n, noiseMultiplier: sigma, steps, delta, orders });
      expectRel(got.epsilon, eps, 1e-8);
      expect(got.order).toBe(order);
    }
  });

  it('matches the TF Privacy tutorial README figures (classic conversion)', () => {
    // TFP tutorials/README.md ("Using Command-Line Interface" and "Select Parameters" table, 2019):
    // N=60000, batch 256, delta 1e-5: sigma 1.1 / 60 epochs -> 3.01; 1.3 / 15 -> 1.19; 0.7 / 45 -> 7.10,
    // computed by privacy/analysis/compute_dp_sgd_privacy.py (same orders and step count as above).
    const orders = [1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5, ...Array.from({ length: 59 }, (_, i) => i + 5), 128, 256, 512];
    for (const [sigma, epochs, eps] of [[1.1, 60, 3.01], [1.3, 15, 1.19], [0.7, 45, 7.1]] as const) {
      const rdp = subsampledGaussianRdp(256 / 60000, sigma, Math.ceil((epochs * 60000) / 256), orders);
      expectRel(rdpToEpsilonClassic(orders, rdp, 1e-5).epsilon, eps, 0.01);
    }
  });

  it('never reports negative epsilon, skips NaN orders, and validates', () => {
    expect(epsilonSpent({ sampleRate: 0, noiseMultiplier: 1, steps: 10, delta: 1e-5 }).epsilon).toBe(0);
    expect(epsilonSpent({ sampleRate: 0.1, noiseMultiplier: 0, steps: 0, delta: 1e-5 }).epsilon).toBe(0);
    expect(epsilonSpent({ sampleRate: 0.1, noiseMultiplier: 0, steps: 1, delta: 1e-5 }).epsilon).toBe(Infinity);
    expect(rdpToEpsilon([63], [1e-9], 0.9).epsilon).toBe(0);
    expect(rdpToEpsilon([2, Infinity], [0.5, Infinity], 1e-5).order).toBe(2);
    expect(rdpToEpsilon([2], [Infinity], 1e-5).epsilon).toBe(Infinity);
    expect(() => rdpToEpsilon([2, 3], [1], 1e-5)).toThrow(/1 values but orders has 2/);
    expect(() => rdpToEpsilon([2], [1], 0)).toThrow(/delta.*got 0/);
    expect(() => rdpToEpsilon([2], [-1], 1e-5)).toThrow(/rdp\[0\]/);
    expect(() => rdpToEpsilonClassic([1], [1], 1e-5)).toThrow(/orders\[0\]/);
    expect(() => addRdp([1], [1, 2])).toThrow(RangeError);
    expect(addRdp([1, 2], [0.5, Infinity])).toEqual([1.5, Infinity]);
  });
});

describe('noiseMultiplierForEpsilon', () => {
  it("matches Opacus's get_noise_multiplier", () => {
    // OPC opacus/tests/accountants_test.py, test_get_noise_multiplier_rdp_epochs: eps 8, delta 1e-5,
    // sample rate 0.04, 90 epochs (steps int(90 / 0.04) = 2250) -> 1.416 (places=4).
    expectRel(noiseMultiplierForEpsilon({ targetEpsilon: 8, delta: 1e-5, sampleRate: 0.04, steps: 2250 }), 1.416, 1e-4);
    // Same file, test_get_noise_multiplier_rdp_steps: 2000 steps -> 1.3562 (places=4).
    expectRel(noiseMultiplierForEpsilon({ targetEpsilon: 8, delta: 1e-5, sampleRate: 0.04, steps: 2000 }), 1.3562, 1e-4);
  });

  it('round-trips: the returned sigma spends at most the target, and within tolerance', () => {
    for (const [targetEpsilon, sampleRate, steps, delta] of [[1, 0.01, 1000, 1e-5], [3, 0.1, 50, 1e-6], [0.5, 0.001, 10000, 1e-5]] as const) {
      const tolerance = 0.01;
      const sigma = noiseMultiplierForEpsilon({ targetEpsilon, delta, sampleRate, steps, tolerance });
      const spent = epsilonSpent({ sampleRate, noiseMultiplier: sigma, steps, delta }).epsilon;
      expect(spent).toBeLessThanOrEqual(targetEpsilon);
      expect(targetEpsilon - spent).toBeLessThanOrEqual(tolerance);
    }
  });

  it('needs no noise when nothing is sampled, and refuses unreachable or invalid targets', () => {
    expect(noiseMultiplierForEpsilon({ targetEpsilon: 1, delta: 1e-5, sampleRate: 0, steps: 100 })).toBe(0);
    // With delta 1e-5 the default orders cannot certify epsilon below ~0.1, however much noise is added.
    expect(() => noiseMultiplierForEpsilon({ targetEpsilon: 0.05, delta: 1e-5, sampleRate: 0.01, steps: 100 })).toThrow(
      /targetEpsilon 0\.05 is unreachable/,
    );
    expect(() => noiseMultiplierForEpsilon({ targetEpsilon: 0, delta: 1e-5, sampleRate: 0.01, steps: 1 })).toThrow(/targetEpsilon/);
    expect(() => noiseMultiplierForEpsilon({ targetEpsilon: 1, delta: 2, sampleRate: 0.01, steps: 1 })).toThrow(/delta/);
    expect(() => noiseMultiplierForEpsilon({ targetEpsilon: 1, delta: 1e-5, sampleRate: 0.01, steps: 1, tolerance: 0 })).toThrow(
      /tolerance/,
    );
  });
});
