import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import type { PixelArray } from './pixels.js';
import { decodeAllFrames, readDicomFile, type DicomImage } from './reader.js';

/**
 * Test support for checking decoders against the shared reference corpus (REFERENCE_VALUES.md): numpy-style
 * indexing on decoded frames and the section G CRC-32. Excluded from the build.
 */
// The shared test corpus sits next to the repository checkout: <repo>/../shared/testdata/dicom.
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const testdata = resolve(repoRoot, '../shared/testdata/dicom');

export const load = (name: string): Promise<DicomImage> => readDicomFile(join(testdata, name), { file: name });

/** numpy-style arr[row, col, sample] on an interleaved frame; negative indices count from the end. */
export function at(image: DicomImage, frame: PixelArray, row: number, col: number, sample = 0): number {
  const { rows, columns, samplesPerPixel } = image.header;
  const r = row < 0 ? rows + row : row;
  const c = col < 0 ? columns + col : col;
  const value = frame[(r * columns + c) * samplesPerPixel + sample];
  if (value === undefined) throw new Error(`index ${row},${col} out of range`);
  return value;
}
export const rowSlice = (img: DicomImage, frame: PixelArray, row: number, from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => at(img, frame, row, from + i));
export const colSlice = (img: DicomImage, frame: PixelArray, col: number, from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => at(img, frame, from + i, col));
export const pixel = (img: DicomImage, frame: PixelArray, row: number, col: number): number[] =>
  Array.from({ length: img.header.samplesPerPixel }, (_, s) => at(img, frame, row, col, s));

/** CRC-32 of all frames as little-endian bytes, as REFERENCE_VALUES.md section G computes it. */
export function pixelCrc(image: DicomImage): { crc: number; bytes: number; min: number; max: number } {
  const frames = decodeAllFrames(image);
  const bytesPerSample = image.header.bitsAllocated / 8;
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0) * bytesPerSample);
  const view = new DataView(out.buffer);
  let i = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const frame of frames) {
    for (const v of frame) {
      if (bytesPerSample === 1) view.setUint8(i, v & 0xff);
      else if (bytesPerSample === 2) view.setUint16(i * 2, v & 0xffff, true);
      else view.setUint32(i * 4, v >>> 0, true);
      min = Math.min(min, v);
      max = Math.max(max, v);
      i++;
    }
  }
  return { crc: crc32(out), bytes: out.length, min, max };
}
