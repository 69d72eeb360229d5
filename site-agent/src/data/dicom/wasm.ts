import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The part of an Emscripten embind object every codec class shares: its C++ memory is freed explicitly. */
export interface EmbindObject {
  delete(): void;
}

/** Geometry a cornerstone codec reports for the decoded image. */
export interface WasmFrameInfo {
  readonly width: number;
  readonly height: number;
  readonly bitsPerSample: number;
  readonly componentCount: number;
  readonly isSigned?: boolean;
}

type EmscriptenFactory = (module: Record<string, unknown>) => Promise<unknown>;

/**
 * The few WebAssembly JS API members used here. The project compiles without the DOM lib and this @types/node
 * does not declare the WebAssembly global, so it is typed locally instead of pulling in browser types.
 */
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => WasmInstance;
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/**
 * Instantiates an Emscripten (MODULARIZE) codec synchronously from the .wasm file inside its npm package, so the
 * reader's synchronous decode API can use it and nothing is fetched over the network. Emscripten lets the host
 * take over instantiation through `instantiateWasm`; when that completes synchronously, the runtime (and the
 * embind classes it registers on the module object) is ready before the factory returns.
 */
export function instantiateEmscripten<M extends object>(scriptId: string, wasmId: string, exportName: string): M {
  const loaded: unknown = require(scriptId);
  if (typeof loaded !== 'function') throw new Error(`${scriptId} does not export an Emscripten factory`);
  const factory = loaded as EmscriptenFactory;
  const wasm = new wasmApi.Module(readFileSync(require.resolve(wasmId)));
  const module: Record<string, unknown> = {
    instantiateWasm(imports: object, done: (instance: WasmInstance, module: object) => void) {
      const instance = new wasmApi.Instance(wasm, imports);
      done(instance, wasm);
      return instance.exports;
    },
    // Emscripten's default printErr writes to the console; codec chatter belongs in the rejection message instead.
    print: () => undefined,
    printErr: () => undefined,
  };
  // The promise only re-reports the initialisation we check synchronously below; keep its rejection from going unhandled.
  factory(module).catch(() => undefined);
  if (typeof module[exportName] !== 'function') {
    throw new Error(`${scriptId}: ${exportName} not available after synchronous instantiation`);
  }
  return module as M;
}

/**
 * Lazily creates a codec module and recreates it after a failure: a wasm trap can leave the Emscripten runtime
 * aborted, and one corrupt file must not poison the decoder for the rest of the site's data.
 */
export function lazyModule<M extends object>(scriptId: string, wasmId: string, exportName: string): {
  use<T>(fn: (module: M) => T): T;
} {
  let cached: M | undefined;
  return {
    use(fn) {
      cached ??= instantiateEmscripten<M>(scriptId, wasmId, exportName);
      try {
        return fn(cached);
      } catch (error) {
        cached = undefined;
        throw error;
      }
    },
  };
}
