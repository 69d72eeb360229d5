/** Float32 vectors travel and rest as little-endian bytes, whatever the host's byte order. */
export function float32ToBytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] as number, true);
  return out;
}

export function bytesToFloat32(bytes: Uint8Array, what = 'float32 vector'): Float32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw new RangeError(`${what} has ${bytes.byteLength} bytes, which is not a whole number of float32 values`);
  }
  const out = new Float32Array(bytes.byteLength / 4);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}
