import { getKernel, type DataType, type KernelBackend, type NamedAttrMap, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';

const BACKEND = 'wasm';

/** The part of the wasm backend that kernels written on its memory use: outputs it allocates, views of its heap. */
export interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * Intermediates of a composed kernel: each wasm kernel run (or buffer allocated) through it is released by
 * dispose(), except the one result kept.
 */
export class Scratch {
  private readonly outputs: TensorInfo[] = [];

  constructor(private readonly backend: KernelBackend) {}

  run(kernelName: string, inputs: NamedTensorInfoMap, attrs: object): TensorInfo {
    const kernel = getKernel(kernelName, BACKEND);
    if (!kernel) throw new Error(`wasm kernel '${kernelName}' is not registered; is @tensorflow/tfjs-backend-wasm loaded?`);
    const out = kernel.kernelFunc({ inputs, backend: this.backend, attrs: attrs as NamedAttrMap });
    if (Array.isArray(out)) throw new Error(`wasm kernel '${kernelName}' returned several outputs; expected one`);
    this.outputs.push(out);
    return out;
  }

  /** A float32 buffer of `shape` in the backend's memory, uninitialised, released with the rest. */
  allocate(shape: number[]): TensorInfo {
    const out = (this.backend as unknown as WasmHeapBackend).makeOutput(shape, 'float32');
    this.outputs.push(out);
    return out;
  }

  /** A view of a float32 tensor in the heap: take it after the last allocation (growing the heap detaches views). */
  view(info: TensorInfo): Float32Array {
    return (this.backend as unknown as WasmHeapBackend).typedArrayFromHeap(info) as Float32Array;
  }

  keep(result: TensorInfo): TensorInfo {
    const index = this.outputs.indexOf(result);
    if (index >= 0) this.outputs.splice(index, 1);
    return result;
  }

  /** Releases one output now rather than at dispose(), for loops that would otherwise pile them up. */
  release(result: TensorInfo): void {
    const index = this.outputs.indexOf(result);
    if (index < 0) return;
    this.outputs.splice(index, 1);
    this.backend.disposeData(result.dataId);
  }

  dispose(): void {
    // Some kernels (e.g. a no-op Transpose) share data with their input and only add a reference, so release
    // through the backend's reference counting rather than assuming each output owns fresh memory.
    for (const out of this.outputs) this.backend.disposeData(out.dataId);
    this.outputs.length = 0;
  }
}

export function required(inputs: NamedTensorInfoMap, name: string): TensorInfo {
  const tensor = inputs[name];
  if (!tensor) throw new Error(`kernel input '${name}' is missing`);
  return tensor;
}
