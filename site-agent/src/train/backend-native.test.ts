import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it, vi } from 'vitest';
import { BackendUnavailableError, initBackend } from './index.js';

// Stand-in for the optional native package (its real install downloads libtensorflow, which this environment
// cannot do): importing it registers a 'tensorflow' backend with the shared tfjs-core, as tfjs-node does.
vi.mock('@tensorflow/tfjs-node', () => {
  tf.registerBackend('tensorflow', () => new MathBackendCPU(), 3);
  return {};
});

describe('initBackend with @tensorflow/tfjs-node installed', () => {
  it("'auto' skips the missing GPU package and picks the native backend", async () => {
    const info = await initBackend('auto');
    expect(info).toEqual({ name: 'tensorflow', detail: 'native libtensorflow via @tensorflow/tfjs-node' });
    expect(tf.getBackend()).toBe('tensorflow');
  });

  it('refuses to switch to the GPU package once the CPU binding owns the native backend', async () => {
    const error = await initBackend('tensorflow-gpu').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/already owns the native TensorFlow binding; restart/);
    expect((await initBackend()).name).toBe('tensorflow');
  });
});
