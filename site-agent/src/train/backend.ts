import { createRequire } from 'node:module';
import { createLogger } from '@federa/shared';
import * as tf from '@tensorflow/tfjs-core';
// Registers the 'cpu' backend factory.
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's Node bundle ships no gradient definitions; the tfjs-layers bundle registers all of them, and
// training needs them whether or not the caller has imported tfjs-layers yet.
import '@tensorflow/tfjs-layers';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { checkGradients, probeGpu, registerWebgpu } from './backend-webgpu.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';
import type { BackendInfo, BackendName, BackendPreference } from './types.js';

const log = createLogger('site-agent.train.backend');

const AUTO_ORDER: readonly BackendName[] = ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'];
const PREFERENCES: readonly BackendPreference[] = ['auto', ...AUTO_ORDER];

/** Optional native packages: hospitals install them from their own mirror, so they are not dependencies. */
const NATIVE_PACKAGES = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
} as const satisfies Partial<Record<BackendName, string>>;

/** Name under which each of our backends is registered with tfjs (both native packages register 'tensorflow'). */
const TF_BACKEND_NAME: Record<BackendName, string> = {
  'tensorflow-gpu': 'tensorflow',
  webgpu: 'webgpu',
  tensorflow: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(
    readonly backend: BackendName,
    message: string,
  ) {
    super(message);
  }
}

let current: BackendInfo | undefined;
let wasmPathsSet = false;
// Initialisations run one at a time: tf.setBackend is global state and concurrent switches would interleave.
let queue: Promise<unknown> = Promise.resolve();

/**
 * Selects and initialises the TensorFlow.js backend for this process. 'auto' tries tfjs-node-gpu, tfjs-node, wasm
 * and cpu in that order and takes the first that loads; once a backend is chosen, later 'auto' calls keep it (so
 * an explicit operator choice sticks) and repeating a call is cheap. Forcing a backend that cannot load throws a
 * {@link BackendUnavailableError} saying what to install.
 */
export function initBackend(preference: BackendPreference = 'auto'): Promise<BackendInfo> {
  const run = queue.then(() => select(preference));
  queue = run.catch(() => undefined);
  return run;
}

/** The backend chosen by the last successful {@link initBackend}, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

async function select(preference: BackendPreference): Promise<BackendInfo> {
  if (!PREFERENCES.includes(preference)) {
    throw new Error(`unknown backend preference '${String(preference)}'; expected one of ${PREFERENCES.join(', ')}`);
  }
  if (current && (preference === 'auto' || preference === current.name)) {
    // Something (a test, another library) may have switched tfjs away since; switch back to our choice.
    if (tf.getBackend() !== TF_BACKEND_NAME[current.name]) await activate(current.name);
    return current;
  }
  if (preference !== 'auto') return commit(preference, await load(preference));

  const skipped: string[] = [];
  for (const name of AUTO_ORDER) {
    try {
      return commit(name, await load(name));
    } catch (err) {
      const reason = errorMessage(err);
      skipped.push(`${name}: ${reason}`);
      log.debug({ backend: name, reason }, 'backend skipped');
    }
  }
  throw new Error(`no TensorFlow.js backend could be initialised (${skipped.join('; ')})`);
}

function commit(name: BackendName, detail: string): BackendInfo {
  current = { name, detail };
  log.info({ backend: name, detail }, 'TensorFlow.js backend selected');
  return current;
}

async function load(name: BackendName): Promise<string> {
  switch (name) {
    case 'tensorflow-gpu':
    case 'tensorflow':
      return loadNative(name);
    case 'webgpu':
      return loadWebgpu();
    case 'wasm':
      return loadWasm();
    case 'cpu':
      await activate('cpu');
      return 'plain JavaScript (slowest; install @tensorflow/tfjs-node or use the wasm backend for real workloads)';
  }
}

async function loadNative(name: 'tensorflow-gpu' | 'tensorflow'): Promise<string> {
  const pkg = NATIVE_PACKAGES[name];
  const install = `install it with \`npm install ${pkg}@${tf.version_core}\``;
  const otherNative = current && current.name !== name && TF_BACKEND_NAME[current.name] === 'tensorflow';
  if (otherNative) {
    // Both packages register the same 'tensorflow' backend; the first one loaded keeps it for the process lifetime.
    throw new BackendUnavailableError(name, `backend '${current?.name}' already owns the native TensorFlow binding; restart the process to use '${name}'`);
  }
  // A variable specifier keeps tsc from resolving (and requiring types for) a package that is usually absent.
  const specifier: string = pkg;
  try {
    await import(specifier);
  } catch (err) {
    throw new BackendUnavailableError(name, `${pkg} is not installed or failed to load (${errorMessage(err)}); ${install}`);
  }
  if (tf.findBackendFactory('tensorflow') === null) {
    throw new BackendUnavailableError(
      name,
      `${pkg} loaded but registered its backend with a different copy of @tensorflow/tfjs-core; ${install} so npm shares one tfjs-core`,
    );
  }
  await activate(name);
  return `native libtensorflow via ${pkg}`;
}

async function loadWebgpu(): Promise<string> {
  let description: string;
  try {
    description = await registerWebgpu();
  } catch (err) {
    throw new BackendUnavailableError('webgpu', errorMessage(err));
  }
  await activate('webgpu');
  try {
    await checkGradients('webgpu');
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `WebGPU on ${description}: ${errorMessage(err)}`);
  }
  return `WebGPU via Dawn (the webgpu package) on ${description}, its gradients checked against the cpu backend`;
}

/** Each backend in auto order: whether this machine can use it, and what it is or why not, without switching. */
export async function backendAvailability(): Promise<Array<{ name: BackendName; available: boolean; detail: string }>> {
  const require = createRequire(import.meta.url);
  const resolves = (specifier: string): boolean => {
    try {
      require.resolve(specifier);
      return true;
    } catch {
      return false;
    }
  };
  const out: Array<{ name: BackendName; available: boolean; detail: string }> = [];
  for (const name of AUTO_ORDER) {
    if (name === 'tensorflow-gpu' || name === 'tensorflow') {
      const pkg = NATIVE_PACKAGES[name];
      const installed = resolves(pkg);
      out.push({ name, available: installed, detail: installed ? `${pkg} installed` : `${pkg} not installed` });
    } else if (name === 'webgpu') {
      const probe = await probeGpu();
      out.push({ name, available: probe.ok, detail: probe.ok ? `adapter: ${probe.description}` : probe.reason });
    } else if (name === 'wasm') {
      const installed = resolves('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm');
      out.push({ name, available: installed, detail: installed ? 'WebAssembly binaries installed' : '@tensorflow/tfjs-backend-wasm is missing its binaries' });
    } else out.push({ name, available: true, detail: 'plain JavaScript' });
  }
  return out;
}

async function loadWasm(): Promise<string> {
  if (!wasmPathsSet) {
    // In Node the .wasm binaries must be read from node_modules by file path, not fetched relative to a page.
    const require = createRequire(import.meta.url);
    const resolveBinary = (file: string): string => require.resolve(`@tensorflow/tfjs-backend-wasm/dist/${file}`);
    try {
      setWasmPaths({
        'tfjs-backend-wasm.wasm': resolveBinary('tfjs-backend-wasm.wasm'),
        'tfjs-backend-wasm-simd.wasm': resolveBinary('tfjs-backend-wasm-simd.wasm'),
        'tfjs-backend-wasm-threaded-simd.wasm': resolveBinary('tfjs-backend-wasm-threaded-simd.wasm'),
      });
    } catch (err) {
      throw new BackendUnavailableError('wasm', `cannot locate the tfjs-backend-wasm binaries (${errorMessage(err)}); reinstall @tensorflow/tfjs-backend-wasm@${tf.version_core}`);
    }
    wasmPathsSet = true;
  }
  // The threaded binary needs Web Workers, which the backend cannot start under Node: use the single-threaded
  // (SIMD when available) build instead of letting feature detection pick a binary that would hang or fail.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  registerWasmTrainingKernels();
  await activate('wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  return `WebAssembly via @tensorflow/tfjs-backend-wasm (${simd ? 'SIMD' : 'no SIMD'}, single-threaded)`;
}

async function activate(name: BackendName): Promise<void> {
  const tfName = TF_BACKEND_NAME[name];
  // setBackend reports failure by returning false (it logs the cause itself), not by throwing.
  if (!(await tf.setBackend(tfName))) {
    const hint = name === 'wasm' ? `check that @tensorflow/tfjs-backend-wasm@${tf.version_core} is installed intact` : 'see the warning logged by TensorFlow.js';
    throw new BackendUnavailableError(name, `TensorFlow.js backend '${tfName}' failed to initialise; ${hint}`);
  }
  await tf.ready();
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] ?? err.message : String(err);
}
