import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, currentBackend, initBackend, type BackendPreference } from './index.js';

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
    await expect(initBackend('webgpu' as BackendPreference)).rejects.toThrow(/unknown backend preference 'webgpu'/);
    // A failed call must not wedge the queue for later ones.
    expect((await initBackend()).name).toBe('wasm');
  });
});
