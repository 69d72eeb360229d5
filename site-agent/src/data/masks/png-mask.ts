import sharp, { type Sharp } from 'sharp';
import { MaskError } from './errors.js';
import type { LabelMask, MaskFile, MaskSegment } from './types.js';

/**
 * A PNG as a label mask. The pixel value is read exactly, never through a colour transform:
 * - grey (1 to 16 bits): the grey level as stored (1, 2 and 4-bit levels are not stretched to 8 bits);
 * - palette: the palette index (PNG label maps such as PASCAL VOC store classes as indices);
 * - RGB: the grey level when every pixel has R = G = B (label maps saved as RGB), else 0xRRGGBB.
 * Alpha is ignored: a mask's meaning is in its values. Values map to labels through `valueLabels` (a value it
 * does not list is refused; list it with label 0 to ignore it); without one, 0 is background and every other
 * value is label 1. EXIF orientation is applied, as the image reader does for PNG images.
 */

export interface ReadPngMaskOptions {
  readonly file?: string;
  /** Key the mask is stored under: the image it belongs to (its SOP Instance UID or file key). Defaults to `file`. */
  readonly imageKey?: string;
  readonly valueLabels?: ReadonlyMap<number, number>;
  /** Names for the labels in `segments`; defaults to "foreground" (default map) or "label N". */
  readonly labelNames?: ReadonlyMap<number, string>;
  /** Refuse a mask of another size than its image. */
  readonly expectedRows?: number;
  readonly expectedColumns?: number;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] as const;
const MAX_LABEL = 255;

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= PNG_SIGNATURE.length && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

/** The PLTE chunk as 0xRRGGBB per index. sharp hands palette images over as colours, so indices are looked up. */
function paletteOf(bytes: Uint8Array, file: string): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = PNG_SIGNATURE.length; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === 'PLTE') {
      if (length % 3 !== 0 || at + 8 + length > bytes.length) break;
      const data = bytes.subarray(at + 8, at + 8 + length);
      return Array.from({ length: length / 3 }, (_, i) => ((data[i * 3] ?? 0) << 16) | ((data[i * 3 + 1] ?? 0) << 8) | (data[i * 3 + 2] ?? 0));
    }
    if (type === 'IDAT' || type === 'IEND') break;
    at += 12 + length;
  }
  throw new MaskError(file, 'invalid', 'palette PNG without a readable PLTE chunk');
}

interface Decoded {
  readonly width: number;
  readonly height: number;
  readonly values: Uint32Array;
}

async function raw(source: Sharp, depth: 'uchar' | 'ushort'): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await source.raw({ depth }).toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

async function decodeValues(bytes: Uint8Array, file: string): Promise<Decoded> {
  const source = (): Sharp => sharp(bytes, { failOn: 'warning', autoOrient: true });
  const meta = await source().metadata();
  if (meta.format !== 'png') throw new MaskError(file, 'invalid', `PNG signature but the decoder found ${meta.format}`);
  const colourBands = (meta.channels ?? 0) - (meta.hasAlpha ? 1 : 0);
  const deep = meta.depth === 'ushort';
  if (meta.isPalette === true) {
    const palette = paletteOf(bytes, file);
    const { data, width, height, channels } = await raw(source().toColourspace('srgb'), 'uchar');
    const indexOf = new Map<number, number>();
    const ambiguous = new Set<number>();
    palette.forEach((rgb, i) => (indexOf.has(rgb) ? ambiguous.add(rgb) : indexOf.set(rgb, i)));
    const values = new Uint32Array(width * height);
    for (let p = 0; p < values.length; p++) {
      const rgb = ((data[p * channels] ?? 0) << 16) | ((data[p * channels + 1] ?? 0) << 8) | (data[p * channels + 2] ?? 0);
      const index = indexOf.get(rgb);
      if (index === undefined || ambiguous.has(rgb)) {
        const hex = rgb.toString(16).padStart(6, '0');
        throw new MaskError(file, 'invalid', index === undefined ? `pixel colour #${hex} is not in the palette` : `palette lists colour #${hex} more than once, so its index is ambiguous`);
      }
      values[p] = index;
    }
    return { width, height, values };
  }
  if (colourBands === 1) {
    const { data, width, height } = await raw(source().toColourspace(deep ? 'grey16' : 'b-w').extractChannel(0), deep ? 'ushort' : 'uchar');
    const values = new Uint32Array(width * height);
    if (deep) {
      // Host-order samples; copied because the Buffer's offset into Node's pool need not be 2-byte aligned.
      const samples = new Uint16Array(values.length);
      new Uint8Array(samples.buffer).set(data.subarray(0, samples.byteLength));
      values.set(samples);
    } else {
      // libspng stretches 1, 2 and 4-bit grey to 0..255; undo it so a 1-bit mask reads 0/1.
      const bits = meta.bitsPerSample ?? 8;
      const levels = bits < 8 ? 2 ** bits - 1 : 255;
      for (let p = 0; p < values.length; p++) values[p] = Math.round(((data[p] ?? 0) * levels) / 255);
    }
    return { width, height, values };
  }
  if (deep) throw new MaskError(file, 'unsupported', '16-bit colour PNG masks are not supported; store labels as grey or palette values');
  const { data, width, height, channels } = await raw(source().toColourspace('srgb'), 'uchar');
  const values = new Uint32Array(width * height);
  let grey = true;
  for (let p = 0; p < values.length; p++) {
    const [r, g, b] = [data[p * channels] ?? 0, data[p * channels + 1] ?? 0, data[p * channels + 2] ?? 0];
    if (r !== g || g !== b) grey = false;
    values[p] = (r << 16) | (g << 8) | b;
  }
  if (grey) for (let p = 0; p < values.length; p++) values[p] = (values[p] ?? 0) & 0xff;
  return { width, height, values };
}

function checkLabels(valueLabels: ReadonlyMap<number, number>, file: string): void {
  for (const [value, label] of valueLabels) {
    if (!Number.isInteger(value) || value < 0) throw new MaskError(file, 'invalid', `mask value ${value} must be a non-negative integer`);
    if (!Number.isInteger(label) || label < 0 || label > MAX_LABEL) throw new MaskError(file, 'invalid', `label ${label} for value ${value} must be an integer in 0..${MAX_LABEL}`);
  }
}

/** Decodes a PNG mask held in memory. */
export async function readPngMask(bytes: Uint8Array, options: ReadPngMaskOptions = {}): Promise<MaskFile> {
  const file = options.file ?? '<memory>';
  if (!isPng(bytes)) throw new MaskError(file, 'not-a-mask', 'not a PNG (no PNG signature)');
  if (options.valueLabels !== undefined) checkLabels(options.valueLabels, file);
  let decoded: Decoded;
  try {
    decoded = await decodeValues(bytes, file);
  } catch (error) {
    if (error instanceof MaskError) throw error;
    const message = (error instanceof Error ? error.message : String(error)).trim().split('\n')[0] ?? '';
    throw new MaskError(file, 'invalid', `PNG cannot be decoded (${message})`, { cause: error });
  }
  const { width, height, values } = decoded;
  if ((options.expectedRows !== undefined && options.expectedRows !== height) || (options.expectedColumns !== undefined && options.expectedColumns !== width)) {
    throw new MaskError(file, 'mismatch', `mask is ${height} rows x ${width} columns, its image ${options.expectedRows ?? '?'} x ${options.expectedColumns ?? '?'}`);
  }
  const labels = new Uint8Array(values.length);
  const map = options.valueLabels;
  const unknown = new Map<number, number>();
  for (let p = 0; p < values.length; p++) {
    const value = values[p] ?? 0;
    if (map === undefined) {
      labels[p] = value === 0 ? 0 : 1;
      continue;
    }
    const label = map.get(value) ?? (value === 0 ? 0 : undefined);
    if (label === undefined) unknown.set(value, (unknown.get(value) ?? 0) + 1);
    else labels[p] = label;
  }
  if (unknown.size > 0) {
    const listed = [...unknown].slice(0, 5).map(([value, count]) => `${value} (${count} pixels)`).join(', ');
    throw new MaskError(file, 'invalid', `mask values not in the value-to-label map: ${listed}${unknown.size > 5 ? `, and ${unknown.size - 5} more` : ''}`);
  }
  const mask: LabelMask = { rows: height, columns: width, labels };
  return { kind: 'png', file, segments: pngSegments(map, options.labelNames), masks: new Map([[options.imageKey ?? file, mask]]), unresolved: [] };
}

function pngSegments(map: ReadonlyMap<number, number> | undefined, names: ReadonlyMap<number, string> | undefined): MaskSegment[] {
  const numbers = map === undefined ? [1] : [...new Set(map.values())].filter((label) => label > 0).sort((a, b) => a - b);
  return numbers.map((number) => ({ number, label: names?.get(number) ?? (map === undefined ? 'foreground' : `label ${number}`) }));
}
