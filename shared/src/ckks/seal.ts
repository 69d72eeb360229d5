import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as nodeModule from 'node:module';
import { dirname, join } from 'node:path';
import initialize, { type MainModule } from 'node-seal/throws';
import { CkksError } from './errors.js';

/** Emscripten's helpers for C++ exceptions; present in node-seal 7's build but missing from its typings. */
interface ExceptionHelpers {
  getExceptionMessage(error: unknown): [string, string];
  decrementExceptionRefcount(error: unknown): void;
}

export type Seal = MainModule & ExceptionHelpers;

/** The few WebAssembly globals used here (the project's lib settings carry no WebAssembly typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmGlobal {
  instantiate(bytes: Uint8Array, imports: unknown): Promise<{ instance: WasmInstance; module: unknown }>;
  Memory: abstract new (...args: never[]) => WasmMemory;
  Exception: abstract new (...args: never[]) => object;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmGlobal }).WebAssembly;

interface LoadedSeal {
  seal: Seal;
  memory: WasmMemory | undefined;
}

let loading: Promise<LoadedSeal> | undefined;
let loaded: LoadedSeal | undefined;

/**
 * Loads Microsoft SEAL (WebAssembly) once per process or worker. We instantiate the module ourselves so we
 * keep a handle on its linear memory: the heap never shrinks, so its size is how leaks of undeleted SEAL
 * objects show up (tests and operators watch it).
 */
export function loadSeal(): Promise<LoadedSeal> {
  loading ??= (async () => {
    const wasmBytes = await readFile(sealWasmPath());
    let memory: WasmMemory | undefined;
    let failInstantiate: (error: unknown) => void = () => undefined;
    // Emscripten waits forever if instantiateWasm never calls back, so a failure must reject from outside.
    const instantiateFailed = new Promise<never>((_, reject) => {
      failInstantiate = reject;
    });
    const seal = await Promise.race([
      initialize({
        instantiateWasm(imports: unknown, done: (instance: WasmInstance, module: unknown) => void) {
          wasm.instantiate(wasmBytes, imports).then(({ instance, module }) => {
            memory = Object.values(instance.exports).find((e): e is WasmMemory => e instanceof wasm.Memory);
            done(instance, module);
          }, failInstantiate);
          return {};
        },
      }),
      instantiateFailed,
    ]);
    const helpers = seal as Partial<ExceptionHelpers>;
    if (typeof helpers.getExceptionMessage !== 'function' || typeof helpers.decrementExceptionRefcount !== 'function') {
      throw new CkksError('SEAL_ERROR', 'this node-seal build does not expose exception messages (expected node-seal 7)');
    }
    loaded = { seal: seal as Seal, memory };
    return loaded;
  })().catch((error: unknown) => {
    // Let a later call try again rather than remember the failure for the life of the process.
    loading = undefined;
    throw error;
  });
  return loading;
}

/** node-seal's package exports hide its files, so find the package folder itself. */
function sealWasmPath(): string {
  const wasmFile = (dir: string): string => join(dir, 'node-seal', 'dist', 'seal_throws.wasm');
  // module.findPackageJSON exists from Node 22.14; older 22.x walks the search paths instead.
  const find = (nodeModule as { findPackageJSON?: (specifier: string, base: string) => string | undefined }).findPackageJSON;
  const packageJson = find?.('node-seal', import.meta.url);
  if (packageJson !== undefined) return wasmFile(dirname(dirname(packageJson)));
  for (const dir of nodeModule.createRequire(import.meta.url).resolve.paths('node-seal') ?? []) {
    if (existsSync(wasmFile(dir))) return wasmFile(dir);
  }
  throw new CkksError('SEAL_ERROR', 'node-seal is not installed (its seal_throws.wasm was not found)');
}

/** Bytes of SEAL's WebAssembly heap (it only grows), or undefined before SEAL is loaded. */
export function sealHeapBytes(): number | undefined {
  return loaded?.memory?.buffer.byteLength;
}

/**
 * Runs a SEAL call and turns its C++ exceptions (opaque WebAssembly.Exception objects) into a CkksError with
 * SEAL's own message, freeing the exception so failures do not leak heap either.
 */
export function sealCall<T>(seal: Seal, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof CkksError) throw error;
    if (error instanceof wasm.Exception) {
      let detail = 'unknown SEAL exception';
      try {
        const [type, message] = seal.getExceptionMessage(error);
        detail = `${type}: ${message}`;
      } finally {
        seal.decrementExceptionRefcount(error);
      }
      throw new CkksError('SEAL_ERROR', `${what} failed in SEAL (${detail})`);
    }
    throw new CkksError('SEAL_ERROR', `${what} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
