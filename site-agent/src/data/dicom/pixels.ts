import type { DicomHeader } from './header.js';

/**
 * Stored pixel values of one frame, interleaved per pixel (r0 g0 b0 r1 ...) when samplesPerPixel > 1.
 * Float32Array / Float64Array come only from Float / Double Float Pixel Data (7FE0,0008 / 7FE0,0009).
 */
export type PixelArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

const MONOCHROME = new Set(['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR']);
const COLOUR = new Set(['RGB', 'YBR_FULL', 'YBR_FULL_422']);

/**
 * Returns why the header describes pixels this reader cannot unpack, or undefined when it can. Checked before
 * any byte is touched so a nonsensical header (e.g. High Bit beyond Bits Allocated) is refused, never misread.
 */
export function unsupportedPixelFormat(h: DicomHeader): string | undefined {
  if (h.rows === 0 || h.columns === 0) return `empty image (${h.rows} x ${h.columns})`;
  if (h.bitsAllocated === 1) {
    // Bit-packed data is only defined for single-sample images (PS3.5 8.1.1); a 1-bit palette index makes no sense.
    if (h.samplesPerPixel !== 1 || (h.photometricInterpretation !== 'MONOCHROME1' && h.photometricInterpretation !== 'MONOCHROME2')) {
      return `Bits Allocated 1 is only supported for MONOCHROME1/2 with 1 sample per pixel (got ${h.photometricInterpretation}, ${h.samplesPerPixel} samples)`;
    }
    if (h.bitsStored !== 1 || h.highBit !== 0) return `Bits Allocated 1 needs Bits Stored 1 and High Bit 0 (got ${h.bitsStored} / ${h.highBit})`;
    if (h.signed) return 'Bits Allocated 1 with signed Pixel Representation is not supported';
    return undefined;
  }
  if (h.bitsAllocated !== 8 && h.bitsAllocated !== 16 && h.bitsAllocated !== 32) {
    return `Bits Allocated ${h.bitsAllocated} is not supported (8, 16 or 32)`;
  }
  if (h.bitsStored < 1 || h.bitsStored > h.bitsAllocated) {
    return `Bits Stored ${h.bitsStored} is inconsistent with Bits Allocated ${h.bitsAllocated}`;
  }
  if (h.highBit < h.bitsStored - 1 || h.highBit >= h.bitsAllocated) {
    return `High Bit ${h.highBit} is inconsistent with Bits Stored ${h.bitsStored} / Bits Allocated ${h.bitsAllocated}`;
  }
  if (h.samplesPerPixel === 1) {
    if (!MONOCHROME.has(h.photometricInterpretation)) {
      return `Photometric Interpretation ${h.photometricInterpretation} with 1 sample per pixel is not supported`;
    }
  } else if (h.samplesPerPixel === 3) {
    if (!COLOUR.has(h.photometricInterpretation)) {
      return `Photometric Interpretation ${h.photometricInterpretation} with 3 samples per pixel is not supported`;
    }
    if (h.photometricInterpretation === 'YBR_FULL_422' && (h.bitsAllocated !== 8 || h.columns % 2 !== 0)) {
      return 'YBR_FULL_422 is only supported with 8-bit samples and an even number of columns';
    }
  } else {
    return `Samples per Pixel ${h.samplesPerPixel} is not supported (1 or 3)`;
  }
  return undefined;
}

/**
 * Expands `count` bit-packed pixels starting at bit `firstBit` of `bytes` to one byte (0 or 1) per pixel. Bits
 * are packed least significant first within each byte (PS3.5 8.1.1), and frame k of a multi-frame image starts
 * at bit k * rows * columns, so frames after the first are generally not byte aligned.
 */
export function unpackBits(bytes: Uint8Array, firstBit: number, count: number): Uint8Array {
  if (Math.ceil((firstBit + count) / 8) > bytes.length) {
    throw new RangeError(`bit-packed data has ${bytes.length} bytes, bits ${firstBit}..${firstBit + count} requested`);
  }
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const bit = firstBit + i;
    out[i] = ((bytes[bit >> 3] ?? 0) >> (bit & 7)) & 1;
  }
  return out;
}

/** Bytes one uncompressed frame occupies in Pixel Data (YBR_FULL_422 stores two chroma samples per pixel pair). */
export function nativeFrameByteLength(h: DicomHeader): number {
  const pixels = h.rows * h.columns;
  if (h.photometricInterpretation === 'YBR_FULL_422') return pixels * 2;
  return pixels * h.samplesPerPixel * (h.bitsAllocated / 8);
}

/** The stored-value array type for the header over an existing buffer (whose length fits it exactly). */
function viewAs(h: DicomHeader, buffer: ArrayBufferLike): PixelArray {
  switch (h.bitsAllocated) {
    case 8:
      return h.signed ? new Int8Array(buffer) : new Uint8Array(buffer);
    case 16:
      return h.signed ? new Int16Array(buffer) : new Uint16Array(buffer);
    default:
      return h.signed ? new Int32Array(buffer) : new Uint32Array(buffer);
  }
}

function allocate(h: DicomHeader, length: number): PixelArray {
  switch (h.bitsAllocated) {
    case 8:
      return h.signed ? new Int8Array(length) : new Uint8Array(length);
    case 16:
      return h.signed ? new Int16Array(length) : new Uint16Array(length);
    default:
      return h.signed ? new Int32Array(length) : new Uint32Array(length);
  }
}

/**
 * Turns little-endian frame bytes into stored values: shifts by (High Bit + 1 - Bits Stored), drops the unused
 * high bits (vendors leave overlay or garbage bits there), sign-extends from Bits Stored when signed, and
 * interleaves planar colour data. `bytes` must hold rows*columns*samplesPerPixel samples of bitsAllocated bits.
 */
export function unpackFrame(bytes: Uint8Array, h: DicomHeader, planar: boolean): PixelArray {
  // Codecs hand 1-bit frames over already expanded to one byte per pixel (see unpackBits).
  if (h.bitsAllocated === 1) {
    const count = h.rows * h.columns;
    if (bytes.length < count) throw new RangeError(`frame has ${bytes.length} unpacked pixels, expected ${count}`);
    return bytes.slice(0, count).map((b) => b & 1);
  }
  const pixelCount = h.rows * h.columns;
  const sampleCount = pixelCount * h.samplesPerPixel;
  const bytesPerSample = h.bitsAllocated / 8;
  if (bytes.length < sampleCount * bytesPerSample) {
    throw new RangeError(`frame has ${bytes.length} bytes, expected ${sampleCount * bytesPerSample}`);
  }
  const byteLength = sampleCount * bytesPerSample;
  const shift = h.highBit + 1 - h.bitsStored;
  const spp = h.samplesPerPixel;
  const deinterleave = planar && spp > 1;
  const fullWidth = shift === 0 && h.bitsStored === h.bitsAllocated;
  if (fullWidth && !deinterleave && (bytesPerSample === 1 || HOST_IS_LITTLE_ENDIAN)) {
    // The common case: every bit is a stored bit, so the bytes already are the values (signedness is the view
    // type). One ArrayBuffer copy, no zero-fill and no per-sample work.
    return viewAs(h, bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + byteLength));
  }
  const out = allocate(h, sampleCount);
  // Samples as unsigned integers of their allocated width. Typed arrays use the host's byte order, so this copy is
  // only a straight reinterpretation on little-endian hosts (every platform Node ships for); elsewhere DataView.
  const raw = bytesPerSample === 1 ? bytes.subarray(0, sampleCount) : littleEndianSamples(bytes, byteLength, bytesPerSample === 2 ? 2 : 4);
  if (fullWidth) {
    if (!deinterleave) {
      // Typed-array set converts modulo 2^n, so unsigned samples land as the right signed values.
      out.set(raw);
      return out;
    }
    const unsigned = bytesPerSample === 1 ? new Uint8Array(out.buffer) : bytesPerSample === 2 ? new Uint16Array(out.buffer) : new Uint32Array(out.buffer);
    interleave(raw, unsigned, pixelCount, spp);
    return out;
  }
  if (h.bitsStored <= 16) {
    // 31-bit integer arithmetic is exact here: shift, mask to Bits Stored, then sign-extend by shifting up and back.
    const mask = (1 << h.bitsStored) - 1;
    const extend = h.signed ? 32 - h.bitsStored : 0;
    for (let i = 0; i < sampleCount; i++) {
      const value = ((((raw[i] ?? 0) >>> shift) & mask) << extend) >> extend;
      out[deinterleave ? (i % pixelCount) * spp + Math.floor(i / pixelCount) : i] = value;
    }
    return out;
  }
  const range = 2 ** h.bitsStored;
  const signBit = 2 ** (h.bitsStored - 1);
  for (let i = 0; i < sampleCount; i++) {
    // Arithmetic instead of bit operators so 32-bit samples do not wrap through int32.
    let value = Math.floor((raw[i] ?? 0) / 2 ** shift) % range;
    if (h.signed && value >= signBit) value -= range;
    // Planar data is RRR..GGG..BBB..; the output is always interleaved RGBRGB.
    out[deinterleave ? (i % pixelCount) * spp + Math.floor(i / pixelCount) : i] = value;
  }
  return out;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Little-endian 16- or 32-bit samples as an unsigned typed array (copied: the source may be unaligned). */
function littleEndianSamples(bytes: Uint8Array, byteLength: number, bytesPerSample: 2 | 4): Uint16Array | Uint32Array {
  const count = byteLength / bytesPerSample;
  const out = bytesPerSample === 2 ? new Uint16Array(count) : new Uint32Array(count);
  if (HOST_IS_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(0, byteLength));
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, byteLength);
  for (let i = 0; i < count; i++) out[i] = bytesPerSample === 2 ? view.getUint16(i * 2, true) : view.getUint32(i * 4, true);
  return out;
}

/** Planar RRR..GGG..BBB.. to interleaved RGBRGB. */
function interleave(planar: ArrayLike<number>, out: Uint8Array | Uint16Array | Uint32Array, pixelCount: number, spp: number): void {
  for (let s = 0; s < spp; s++) {
    const base = s * pixelCount;
    for (let p = 0; p < pixelCount; p++) out[p * spp + s] = planar[base + p] ?? 0;
  }
}

/** Expands native YBR_FULL_422 (Y1 Y2 Cb Cr per horizontal pixel pair) to full Y Cb Cr triplets per pixel. */
export function upsampleYbr422(bytes: Uint8Array, h: DicomHeader): Uint8Array {
  const pairs = (h.rows * h.columns) / 2;
  const out = new Uint8Array(h.rows * h.columns * 3);
  for (let p = 0; p < pairs; p++) {
    const src = p * 4;
    const dst = p * 6;
    const cb = bytes[src + 2] ?? 0;
    const cr = bytes[src + 3] ?? 0;
    out[dst] = bytes[src] ?? 0;
    out[dst + 1] = cb;
    out[dst + 2] = cr;
    out[dst + 3] = bytes[src + 1] ?? 0;
    out[dst + 4] = cb;
    out[dst + 5] = cr;
  }
  return out;
}

/** Converts big-endian samples to little-endian in a fresh buffer (the source may be a shared file buffer). */
export function swapToLittleEndian(bytes: Uint8Array, bytesPerSample: 2 | 4): Uint8Array {
  const out = new Uint8Array(bytes.length - (bytes.length % bytesPerSample));
  for (let i = 0; i < out.length; i += bytesPerSample) {
    for (let b = 0; b < bytesPerSample; b++) out[i + b] = bytes[i + bytesPerSample - 1 - b] ?? 0;
  }
  return out;
}
