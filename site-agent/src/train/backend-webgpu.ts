import { parseModelSpec, initialWeights } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
import { buildModel } from './model.js';

/**
 * The WebGPU backend: @tensorflow/tfjs-backend-webgpu on Dawn, the `webgpu` npm package's native module (both are
 * dependencies, so nothing is downloaded at install or run time). What a machine may lack is a GPU adapter: Dawn
 * drives the GPU through Vulkan, so it needs the vendor's Vulkan driver and the loader (libvulkan1). A backend that
 * loads is used for training only after a gradient check: a small model's gradient on a few images must match the
 * cpu backend's, so a driver or kernel that computes wrongly is skipped rather than trusted.
 */

/** What a probe of the GPU says: an adapter (its description), or why there is none. */
export type GpuProbe = { ok: true; description: string } | { ok: false; reason: string };

interface MinimalAdapter {
  info?: { vendor?: string; architecture?: string; description?: string; device?: string };
}
interface MinimalGpu {
  requestAdapter(options?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<MinimalAdapter | null>;
}
interface DawnModule {
  create(options: string[]): MinimalGpu;
  globals: Record<string, unknown>;
}

let dawn: Promise<MinimalGpu> | undefined;

/** Dawn's GPU object, created once per process, with WebGPU's constants (GPUBufferUsage, ...) made global. */
function gpu(): Promise<MinimalGpu> {
  dawn ??= (async () => {
    // A variable specifier keeps tsc from pulling @webgpu/types' global declarations into the project.
    const specifier: string = 'webgpu';
    const module = (await import(specifier)) as DawnModule;
    for (const [name, value] of Object.entries(module.globals)) {
      if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
    }
    return module.create([]);
  })();
  return dawn;
}

/** Whether this machine has a WebGPU adapter, without selecting the backend. */
export async function probeGpu(): Promise<GpuProbe> {
  let adapter: MinimalAdapter | null;
  try {
    adapter = await (await gpu()).requestAdapter({ powerPreference: 'high-performance' });
  } catch (error) {
    return { ok: false, reason: `the webgpu package (Dawn) failed to load: ${(error as Error).message.split('\n')[0]}` };
  }
  if (!adapter) return { ok: false, reason: 'no WebGPU adapter: no GPU, or no Vulkan driver for it; install the GPU vendor\'s driver and libvulkan1' };
  const info = adapter.info ?? {};
  const description = [info.vendor, info.architecture, info.description || info.device].filter((part) => part && part.length > 0).join(' ');
  return { ok: true, description: description || 'unnamed adapter' };
}

/**
 * Registers the webgpu backend with tfjs once an adapter exists (tfjs-backend-webgpu decides at import whether
 * WebGPU is there, from navigator.gpu). Returns the adapter's description, or throws with the reason there is none.
 */
export async function registerWebgpu(): Promise<string> {
  const probe = await probeGpu();
  if (!probe.ok) throw new Error(probe.reason);
  const navigatorObject = (globalThis as { navigator?: object }).navigator;
  const device = await gpu();
  if (navigatorObject) {
    if (!('gpu' in navigatorObject)) Object.defineProperty(navigatorObject, 'gpu', { value: device, configurable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: device }, configurable: true, writable: true });
  }
  const specifier: string = '@tensorflow/tfjs-backend-webgpu';
  await import(specifier);
  if (tf.findBackendFactory('webgpu') === null) throw new Error('@tensorflow/tfjs-backend-webgpu did not register its backend (it found no navigator.gpu)');
  return probe.description;
}

/** Largest gradient difference, relative to the cpu backend's largest gradient, that the check accepts. */
const GRADIENT_TOLERANCE = 1e-3;

/**
 * Compares the gradient of a small-cnn's loss on 4 random 16x16 images computed on `backend` (which must be
 * active) with the cpu backend's, and leaves `backend` active. Throws when they differ by more than float32 sums in
 * another order explain, or when a kernel training needs is missing there.
 */
export async function checkGradients(backend: string, tolerance = GRADIENT_TOLERANCE): Promise<void> {
  const spec = parseModelSpec({ architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 9 });
  const weights = initialWeights(spec);
  const pixels = Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => ((i * 2654435761) % 1000) / 1000);
  const labels = Int32Array.from([0, 1, 1, 0]);
  const gradient = (): Float32Array => {
    const model = buildModel(spec, weights);
    try {
      const variables = model.weights.map((w) => w.read() as tf.Variable);
      return tf.tidy(() => {
        const xs = tf.tensor4d(pixels, [4, 16, 16, 1]);
        const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), 2);
        const { grads } = tf.variableGrads(() => {
          const probs = model.apply(xs, { training: true }) as tf.Tensor2D;
          return tf.neg(tf.sum(tf.mul(ys, tf.log(tf.clipByValue(probs, 1e-7, 1 - 1e-7))))) as tf.Scalar;
        }, variables);
        return Float32Array.from(variables.flatMap((v) => [...(grads[v.name] as tf.Tensor).dataSync()]));
      });
    } finally {
      model.dispose();
    }
  };
  const onBackend = gradient();
  await tf.setBackend('cpu');
  const reference = gradient();
  if (!(await tf.setBackend(backend))) throw new Error(`could not switch back to the ${backend} backend after the gradient check`);
  let scale = 1e-6;
  let worst = 0;
  for (let i = 0; i < reference.length; i++) {
    scale = Math.max(scale, Math.abs(reference[i] as number));
    worst = Math.max(worst, Math.abs((onBackend[i] as number) - (reference[i] as number)));
  }
  if (!(worst / scale <= tolerance)) {
    throw new Error(`its gradients differ from the cpu backend's by ${(worst / scale).toExponential(1)} of their scale (at most ${tolerance} expected)`);
  }
}
