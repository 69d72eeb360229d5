import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { checkGradients, probeGpu } from './backend-webgpu.js';
import { backendAvailability, BackendUnavailableError, currentBackend, initBackend, type BackendPreference } from './index.js';

// Module state (the chosen backend) lives for the whole file, so the cases build on each other in order.
describe('initBackend', () => {
  it("'auto' picks wasm here, where the optional tfjs-node packages are not installed", async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe('wasm');
    expect(info.detail).toMatch(/WebAssembly.*single-threaded/);
    expect(tf.getBackend()).toBe('wasm');
    expect(currentBackend()).toEqual(info);
  });

  it('is idempotent, also under concurrent calls', async () => {
    const first = await initBackend();
    const again = await Promise.all([initBackend(), initBackend('auto'), initBackend('wasm')]);
    for (const info of again) expect(info).toEqual(first);
    expect(tf.getBackend()).toBe('wasm');
  });

  it.each([
    ['tensorflow-gpu', '@tensorflow/tfjs-node-gpu'],
    ['tensorflow', '@tensorflow/tfjs-node'],
  ] as const)('forcing %s throws saying what to install, and keeps the current backend', async (name, pkg) => {
    const error = await initBackend(name).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).backend).toBe(name);
    expect((error as Error).message).toContain(`npm install ${pkg}@${tf.version_core}`);
    expect(tf.getBackend()).toBe('wasm');
    expect((await initBackend()).name).toBe('wasm');
  });

  it('switches when forced, keeps an explicit choice for later auto calls, and restores it if tfjs was switched', async () => {
    expect((await initBackend('cpu')).name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect((await initBackend('auto')).name).toBe('cpu');
    expect((await initBackend('wasm')).name).toBe('wasm');
    await tf.setBackend('cpu');
    expect((await initBackend()).name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('rejects an unknown preference from configuration', async () => {
    await expect(initBackend('metal' as BackendPreference)).rejects.toThrow(/unknown backend preference 'metal'/);
    // A failed call must not wedge the queue for later ones.
    expect((await initBackend()).name).toBe('wasm');
  });
});

describe('the webgpu backend', () => {
  it('is skipped by auto, and refused when forced, with the reason: no adapter on a machine without a GPU', async () => {
    const probe = await probeGpu();
    // These machines have no GPU; on one with a GPU and its Vulkan driver the probe names the adapter instead.
    expect(probe).toEqual({ ok: false, reason: expect.stringMatching(/^no WebGPU adapter: no GPU, or no Vulkan driver for it|^the webgpu package \(Dawn\) failed to load/) as unknown });
    const error = await initBackend('webgpu').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).backend).toBe('webgpu');
    expect((error as Error).message).toBe(probe.ok ? '' : probe.reason);
    expect((await initBackend()).name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    const order = await backendAvailability();
    expect(order.map((b) => b.name)).toEqual(['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu']);
    expect(order.find((b) => b.name === 'webgpu')).toEqual({ name: 'webgpu', available: false, detail: probe.ok ? '' : probe.reason });
  });

  it('would be used only after its gradients match the cpu backend\'s: the check passes on wasm, and fails at a tolerance no float32 sum meets', async () => {
    expect((await initBackend('wasm')).name).toBe('wasm');
    await expect(checkGradients('wasm')).resolves.toBeUndefined();
    expect(tf.getBackend()).toBe('wasm');
    await expect(checkGradients('wasm', 0)).rejects.toThrow(/its gradients differ from the cpu backend's by \d\.\de-\d+ of their scale \(at most 0 expected\)/);
    expect(tf.getBackend()).toBe('wasm');
  });
});
