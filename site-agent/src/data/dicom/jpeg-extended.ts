import { createLogger } from '@federa/shared';
import type { CodecFrame, CodecInput } from './codecs.js';
import { checkGeometry, widenSamples } from './encapsulated.js';
import { DicomRejection, type DicomRejectionReason } from './rejection.js';

/**
 * Sequential DCT JPEG with Huffman coding (ITU T.81 baseline and extended sequential: DICOM Processes 1, 2 and 4)
 * for 8- and 12-bit samples, in TypeScript. The WebAssembly libjpeg-turbo build the reader uses is 8-bit only and
 * no maintained npm package decodes 12-bit DCT, so 12-bit JPEG Extended (.51) frames come here.
 *
 * It follows libjpeg-turbo wherever the standard leaves room, so that a 12-bit frame decodes the way the 8-bit
 * path (libjpeg-turbo itself) would: the accurate integer IDCT (jidctint), its "fancy" triangle upsampling of
 * 2:1 chroma, its guess of the colour space of 3-component data and its YCbCr to RGB arithmetic. The tests check
 * this bit for bit against the 8-bit libjpeg-turbo build.
 *
 * Unlike libjpeg it does not patch over damage: data that runs out, a broken Huffman code, a missing or misnumbered
 * restart marker or left-over entropy-coded bytes are refused, because a silently half-grey image is worse for
 * training than a rejected file. Every loop is bounded by the stream length or by the block count, which is
 * itself checked against the stream length before anything is allocated.
 */

const log = createLogger('site-agent.dicom.jpeg');

/** Zig-zag scan position to natural (row-major) position in an 8 x 8 block. */
const ZIGZAG = Uint8Array.of(
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
  28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
  54, 47, 55, 62, 63,
);

/** Start Of Frame markers this decoder refuses, with the coding process each names (T.81 Table B.1). */
export const UNSUPPORTED_FRAMES: ReadonlyMap<number, string> = new Map([
  [0xc2, 'progressive DCT, Huffman coding (SOF2)'],
  [0xc3, 'lossless, Huffman coding (SOF3)'],
  [0xc5, 'differential sequential DCT, Huffman coding (SOF5, hierarchical)'],
  [0xc6, 'differential progressive DCT, Huffman coding (SOF6, hierarchical)'],
  [0xc7, 'differential lossless, Huffman coding (SOF7, hierarchical)'],
  [0xc9, 'extended sequential DCT, arithmetic coding (SOF9)'],
  [0xca, 'progressive DCT, arithmetic coding (SOF10)'],
  [0xcb, 'lossless, arithmetic coding (SOF11)'],
  [0xcd, 'differential sequential DCT, arithmetic coding (SOF13, hierarchical)'],
  [0xce, 'differential progressive DCT, arithmetic coding (SOF14, hierarchical)'],
  [0xcf, 'differential lossless, arithmetic coding (SOF15, hierarchical)'],
  [0xde, 'hierarchical (DHP)'],
  [0xdf, 'hierarchical (EXP)'],
  [0xf7, 'JPEG-LS (SOF55)'],
]);

/** What the frame header declares, handed to `checkFrame` before any sample buffer is allocated. */
export interface JpegFrameInfo {
  readonly width: number;
  readonly height: number;
  readonly componentCount: number;
  readonly precision: number;
}

export interface JpegDecodeOptions {
  /** Prefix for rejection messages, e.g. "JPEG frame 3". */
  readonly label?: string;
  /** Called once the frame header is read, before allocation; throw to refuse the frame (e.g. wrong geometry). */
  readonly checkFrame?: (frame: JpegFrameInfo) => void;
}

export interface JpegImage extends JpegFrameInfo {
  /** Samples interleaved per pixel, row by row, in [0, 2^precision - 1]. */
  readonly samples: Uint16Array;
  /** True when 3-component data was taken to be YCbCr and converted to RGB, as libjpeg does (see colourIsYCbCr). */
  readonly convertedToRgb: boolean;
}

interface HuffmanTable {
  /** Indexed by the next 9 bits: (code length << 8) | symbol, or 0 when the code is longer than 9 bits. */
  readonly lookup: Uint16Array;
  /** Largest code of each length 0..16 (index = length), -1 when there is none. */
  readonly maxCode: Int32Array;
  /** Per length: values index = code + valueOffset[length]. */
  readonly valueOffset: Int32Array;
  readonly values: Uint8Array;
}

interface Component {
  readonly id: number;
  readonly h: number;
  readonly v: number;
  readonly quantTable: number;
  /** Size of the component's own sample grid: ceil(X * h / hMax) x ceil(Y * v / vMax). */
  readonly width: number;
  readonly height: number;
  /** Decoded samples, padded to whole MCUs; row stride = planeWidth. */
  plane: Uint16Array;
  planeWidth: number;
  scanned: boolean;
}

interface Frame {
  readonly precision: number;
  readonly width: number;
  readonly height: number;
  readonly components: Component[];
  readonly hMax: number;
  readonly vMax: number;
  readonly mcusX: number;
  readonly mcusY: number;
}

const LOOKUP_BITS = 9;

/**
 * Canonical Huffman table from a DHT's 16 code counts and its symbols (T.81 Annex C). Refused, as libjpeg does,
 * when the counts over-subscribe a code length, which would make codes ambiguous.
 */
function buildHuffmanTable(counts: Uint8Array, values: Uint8Array): HuffmanTable | undefined {
  const lookup = new Uint16Array(1 << LOOKUP_BITS);
  const maxCode = new Int32Array(17).fill(-1);
  const valueOffset = new Int32Array(17);
  let code = 0;
  let k = 0;
  for (let length = 1; length <= 16; length++) {
    const count = counts[length - 1] ?? 0;
    valueOffset[length] = k - code;
    for (let i = 0; i < count; i++, k++, code++) {
      if (length <= LOOKUP_BITS) {
        const shift = LOOKUP_BITS - length;
        const entry = (length << 8) | (values[k] ?? 0);
        lookup.fill(entry, code << shift, (code + 1) << shift);
      }
    }
    if (count > 0) maxCode[length] = code - 1;
    // No code may be all ones (T.81 C.2), so after each length the next code must still fit in that length.
    if (code >= 1 << length) return undefined;
    code <<= 1;
  }
  return { lookup, maxCode, valueOffset, values };
}

/**
 * libjpeg-turbo's guess of the colour space of 3-component data (jdapimin.c default_decompress_parms): JFIF means
 * YCbCr; else an Adobe marker's transform flag decides; else component IDs 'R','G','B' mean RGB and anything else
 * YCbCr. Following it keeps 12-bit frames consistent with 8-bit ones, which libjpeg-turbo converts to RGB; the
 * header reader reports YBR_FULL(_422) JPEG images as RGB for that reason.
 */
function colourIsYCbCr(ids: readonly number[], sawJfif: boolean, adobeTransform: number | undefined): boolean {
  if (sawJfif) return true;
  if (adobeTransform !== undefined) return adobeTransform !== 0;
  return !(ids[0] === 82 && ids[1] === 71 && ids[2] === 66);
}

// Accurate integer IDCT constants (libjpeg jidctint.c), FIX(x) = round(x * 2^13).
const CONST_BITS = 13;
const FIX_0_298631336 = 2446;
const FIX_0_390180644 = 3196;
const FIX_0_541196100 = 4433;
const FIX_0_765366865 = 6270;
const FIX_0_899976223 = 7373;
const FIX_1_175875602 = 9633;
const FIX_1_501321110 = 12299;
const FIX_1_847759065 = 15137;
const FIX_1_961570560 = 16069;
const FIX_2_053119869 = 16819;
const FIX_2_562915447 = 20995;
const FIX_3_072711026 = 25172;

/**
 * libjpeg's accurate integer IDCT (jpeg_idct_islow, the default method) with level shift and clamping, so results
 * match libjpeg-built decoders exactly. Arithmetic is in doubles: with 12-bit data the products exceed 32 bits
 * (libjpeg uses 64-bit longs), and below 2^53 doubles are exact; the descaling shifts become multiplications by
 * powers of two and Math.floor, which is an arithmetic right shift.
 */
class Idct {
  private readonly workspace = new Float64Array(64);
  private readonly pass1Half: number;
  private readonly pass1Scale: number;
  private readonly pass2Half: number;
  private readonly pass2Scale: number;
  private readonly dcShift: number;
  private readonly dcHalf: number;
  private readonly dcScale: number;
  private readonly center: number;
  private readonly max: number;

  constructor(precision: number) {
    // libjpeg keeps one more bit of pass-1 precision for 8-bit samples, where it fits in 32 bits.
    const pass1Bits = precision === 8 ? 2 : 1;
    this.pass1Half = 2 ** (CONST_BITS - pass1Bits - 1);
    this.pass1Scale = 2 ** -(CONST_BITS - pass1Bits);
    this.pass2Half = 2 ** (CONST_BITS + pass1Bits + 3 - 1);
    this.pass2Scale = 2 ** -(CONST_BITS + pass1Bits + 3);
    this.dcShift = 2 ** pass1Bits;
    this.dcHalf = 2 ** (pass1Bits + 3 - 1);
    this.dcScale = 2 ** -(pass1Bits + 3);
    this.center = 1 << (precision - 1);
    this.max = (1 << precision) - 1;
  }

  /** Inverse-transforms one block of quantised coefficients (natural order) into `out` at `offset`, row stride `stride`. */
  run(coef: Int16Array, quant: Uint16Array, out: Uint16Array, offset: number, stride: number): void {
    const ws = this.workspace;
    const half1 = this.pass1Half;
    const scale1 = this.pass1Scale;
    for (let c = 0; c < 8; c++) {
      if (coef[8 + c] === 0 && coef[16 + c] === 0 && coef[24 + c] === 0 && coef[32 + c] === 0 && coef[40 + c] === 0 && coef[48 + c] === 0 && coef[56 + c] === 0) {
        // All AC terms zero: the column is flat (same result as the full computation, much cheaper).
        const dc = coef[c]! * quant[c]! * this.dcShift;
        for (let r = 0; r < 8; r++) ws[r * 8 + c] = dc;
        continue;
      }
      // Even part.
      let z2 = coef[16 + c]! * quant[16 + c]!;
      let z3 = coef[48 + c]! * quant[48 + c]!;
      let z1 = (z2 + z3) * FIX_0_541196100;
      let tmp2 = z1 - z3 * FIX_1_847759065;
      let tmp3 = z1 + z2 * FIX_0_765366865;
      z2 = coef[c]! * quant[c]!;
      z3 = coef[32 + c]! * quant[32 + c]!;
      let tmp0 = (z2 + z3) * 8192;
      let tmp1 = (z2 - z3) * 8192;
      const tmp10 = tmp0 + tmp3;
      const tmp13 = tmp0 - tmp3;
      const tmp11 = tmp1 + tmp2;
      const tmp12 = tmp1 - tmp2;
      // Odd part.
      tmp0 = coef[56 + c]! * quant[56 + c]!;
      tmp1 = coef[40 + c]! * quant[40 + c]!;
      tmp2 = coef[24 + c]! * quant[24 + c]!;
      tmp3 = coef[8 + c]! * quant[8 + c]!;
      z1 = tmp0 + tmp3;
      z2 = tmp1 + tmp2;
      z3 = tmp0 + tmp2;
      let z4 = tmp1 + tmp3;
      const z5 = (z3 + z4) * FIX_1_175875602;
      tmp0 *= FIX_0_298631336;
      tmp1 *= FIX_2_053119869;
      tmp2 *= FIX_3_072711026;
      tmp3 *= FIX_1_501321110;
      z1 *= -FIX_0_899976223;
      z2 *= -FIX_2_562915447;
      z3 = z3 * -FIX_1_961570560 + z5;
      z4 = z4 * -FIX_0_390180644 + z5;
      tmp0 += z1 + z3;
      tmp1 += z2 + z4;
      tmp2 += z2 + z3;
      tmp3 += z1 + z4;
      ws[c] = Math.floor((tmp10 + tmp3 + half1) * scale1);
      ws[56 + c] = Math.floor((tmp10 - tmp3 + half1) * scale1);
      ws[8 + c] = Math.floor((tmp11 + tmp2 + half1) * scale1);
      ws[48 + c] = Math.floor((tmp11 - tmp2 + half1) * scale1);
      ws[16 + c] = Math.floor((tmp12 + tmp1 + half1) * scale1);
      ws[40 + c] = Math.floor((tmp12 - tmp1 + half1) * scale1);
      ws[24 + c] = Math.floor((tmp13 + tmp0 + half1) * scale1);
      ws[32 + c] = Math.floor((tmp13 - tmp0 + half1) * scale1);
    }
    const half2 = this.pass2Half;
    const scale2 = this.pass2Scale;
    const center = this.center;
    const max = this.max;
    for (let r = 0; r < 8; r++) {
      const w = r * 8;
      const o = offset + r * stride;
      if (ws[w + 1] === 0 && ws[w + 2] === 0 && ws[w + 3] === 0 && ws[w + 4] === 0 && ws[w + 5] === 0 && ws[w + 6] === 0 && ws[w + 7] === 0) {
        let v = Math.floor((ws[w]! + this.dcHalf) * this.dcScale) + center;
        v = v < 0 ? 0 : v > max ? max : v;
        out.fill(v, o, o + 8);
        continue;
      }
      let z2 = ws[w + 2]!;
      let z3 = ws[w + 6]!;
      let z1 = (z2 + z3) * FIX_0_541196100;
      let tmp2 = z1 - z3 * FIX_1_847759065;
      let tmp3 = z1 + z2 * FIX_0_765366865;
      let tmp0 = (ws[w]! + ws[w + 4]!) * 8192;
      let tmp1 = (ws[w]! - ws[w + 4]!) * 8192;
      const tmp10 = tmp0 + tmp3;
      const tmp13 = tmp0 - tmp3;
      const tmp11 = tmp1 + tmp2;
      const tmp12 = tmp1 - tmp2;
      tmp0 = ws[w + 7]!;
      tmp1 = ws[w + 5]!;
      tmp2 = ws[w + 3]!;
      tmp3 = ws[w + 1]!;
      z1 = tmp0 + tmp3;
      z2 = tmp1 + tmp2;
      z3 = tmp0 + tmp2;
      let z4 = tmp1 + tmp3;
      const z5 = (z3 + z4) * FIX_1_175875602;
      tmp0 *= FIX_0_298631336;
      tmp1 *= FIX_2_053119869;
      tmp2 *= FIX_3_072711026;
      tmp3 *= FIX_1_501321110;
      z1 *= -FIX_0_899976223;
      z2 *= -FIX_2_562915447;
      z3 = z3 * -FIX_1_961570560 + z5;
      z4 = z4 * -FIX_0_390180644 + z5;
      tmp0 += z1 + z3;
      tmp1 += z2 + z4;
      tmp2 += z2 + z3;
      tmp3 += z1 + z4;
      out[o] = clamp(Math.floor((tmp10 + tmp3 + half2) * scale2) + center, max);
      out[o + 7] = clamp(Math.floor((tmp10 - tmp3 + half2) * scale2) + center, max);
      out[o + 1] = clamp(Math.floor((tmp11 + tmp2 + half2) * scale2) + center, max);
      out[o + 6] = clamp(Math.floor((tmp11 - tmp2 + half2) * scale2) + center, max);
      out[o + 2] = clamp(Math.floor((tmp12 + tmp1 + half2) * scale2) + center, max);
      out[o + 5] = clamp(Math.floor((tmp12 - tmp1 + half2) * scale2) + center, max);
      out[o + 3] = clamp(Math.floor((tmp13 + tmp0 + half2) * scale2) + center, max);
      out[o + 4] = clamp(Math.floor((tmp13 - tmp0 + half2) * scale2) + center, max);
    }
  }
}

function clamp(v: number, max: number): number {
  return v < 0 ? 0 : v > max ? max : v;
}

/** A marker's name for messages, e.g. "FFD9". */
const markerName = (code: number): string => `FF${code.toString(16).toUpperCase().padStart(2, '0')}`;

class JpegDecoder {
  private readonly data: Uint8Array;
  private readonly end: number;
  private pos = 2;
  private readonly quantTables: (Uint16Array | undefined)[] = [undefined, undefined, undefined, undefined];
  private readonly dcTables: (HuffmanTable | undefined)[] = [undefined, undefined, undefined, undefined];
  private readonly acTables: (HuffmanTable | undefined)[] = [undefined, undefined, undefined, undefined];
  private restartInterval = 0;
  private frame: Frame | undefined;
  private sawJfif = false;
  private adobeTransform: number | undefined;
  private scans = 0;

  // Entropy-coded segment reader: `bitCount` bits are buffered in the low end of `bits`; the last `padBits` of
  // them are zeros invented past a marker or the end of the data, and consuming any of them means the data ran out.
  private bits = 0;
  private bitCount = 0;
  private padBits = 0;
  private readonly coef = new Int16Array(64);
  private idct: Idct | undefined;

  constructor(
    stream: Uint8Array,
    private readonly file: string,
    private readonly options: JpegDecodeOptions,
  ) {
    this.data = stream;
    this.end = stream.length;
  }

  private fail(reason: DicomRejectionReason, detail: string): never {
    throw new DicomRejection(this.file, reason, `${this.options.label ?? 'JPEG stream'} ${detail}`);
  }

  private corrupt(detail: string): never {
    return this.fail('corrupt', `is corrupt: ${detail}`);
  }

  decode(): JpegImage {
    const d = this.data;
    if (this.end < 4 || d[0] !== 0xff || d[1] !== 0xd8) this.fail('corrupt', 'does not start with a JPEG SOI marker (FFD8)');
    // Each pass either consumes a segment or stops, so the loop ends within the stream length.
    for (;;) {
      const marker = this.nextMarker();
      if (marker === 0xd9) return this.finish();
      if (marker === 0xd8) this.corrupt('a second SOI marker inside the image');
      // RSTn and TEM carry no length; libjpeg ignores them between segments, and so does this.
      if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue;
      const start = this.pos;
      if (start + 2 > this.end) this.truncated(`inside the ${markerName(marker)} marker segment`);
      const length = (d[start]! << 8) | d[start + 1]!;
      if (length < 2) this.corrupt(`marker ${markerName(marker)} declares length ${length}`);
      const segmentEnd = start + length;
      if (segmentEnd > this.end) this.truncated(`inside the ${markerName(marker)} marker segment`);
      const body = d.subarray(start + 2, segmentEnd);
      this.pos = segmentEnd;
      const process = UNSUPPORTED_FRAMES.get(marker);
      if (process !== undefined) {
        this.fail('unsupported-pixel-format', `uses ${process}; only sequential DCT with Huffman coding (Processes 1, 2 and 4) decodes`);
      }
      if (marker === 0xc0 || marker === 0xc1) this.readFrame(body);
      else if (marker === 0xc4) this.readHuffmanTables(body);
      else if (marker === 0xdb) this.readQuantTables(body);
      else if (marker === 0xdd) this.readRestartInterval(body);
      else if (marker === 0xda) this.readScan(body);
      else if (marker === 0xe0) this.sawJfif ||= body.length >= 14 && body[0] === 0x4a && body[1] === 0x46 && body[2] === 0x49 && body[3] === 0x46 && body[4] === 0;
      else if (marker === 0xee && body.length >= 12 && body[0] === 0x41 && body[1] === 0x64 && body[2] === 0x6f && body[3] === 0x62 && body[4] === 0x65) this.adobeTransform = body[11];
      // Everything else (other APPn, COM, DNL, DAC, JPGn) carries nothing a sequential Huffman decoder needs.
    }
  }

  /** The stream stops early. Its fragments were complete in the file, so the damage happened before it was stored. */
  private truncated(where: string): never {
    return this.fail('corrupt', `ends ${where}; the frame is cut short`);
  }

  /** Finds the next marker from `pos`, skipping fill bytes and (as libjpeg does) stray bytes between segments. */
  private nextMarker(): number {
    const d = this.data;
    while (this.pos < this.end) {
      if (d[this.pos] !== 0xff) {
        this.pos++;
        continue;
      }
      while (this.pos < this.end && d[this.pos] === 0xff) this.pos++;
      if (this.pos >= this.end) break;
      const code = d[this.pos++]!;
      if (code !== 0) return code;
    }
    return this.truncated(this.frame === undefined ? 'before its frame header' : 'before the EOI marker');
  }

  private readFrame(body: Uint8Array): void {
    if (this.frame !== undefined) this.corrupt('more than one frame header');
    if (body.length < 6) this.corrupt('frame header too short');
    const precision = body[0]!;
    const height = (body[1]! << 8) | body[2]!;
    const width = (body[3]! << 8) | body[4]!;
    const count = body[5]!;
    if (precision !== 8 && precision !== 12) {
      this.fail('unsupported-pixel-format', `has ${precision}-bit samples; sequential DCT JPEG is defined for 8 and 12 bits`);
    }
    if (height === 0) this.fail('unsupported-pixel-format', 'defers its height to a DNL marker, which is not supported');
    if (width === 0) this.corrupt('frame width is 0');
    if (count !== 1 && count !== 3) this.fail('unsupported-pixel-format', `has ${count} components; only 1 or 3 are supported`);
    if (body.length !== 6 + 3 * count) this.corrupt(`frame header length does not match ${count} components`);
    const raw: { id: number; h: number; v: number; quantTable: number }[] = [];
    for (let i = 0; i < count; i++) {
      const id = body[6 + 3 * i]!;
      const sampling = body[7 + 3 * i]!;
      const quantTable = body[8 + 3 * i]!;
      const h = sampling >> 4;
      const v = sampling & 15;
      if (h < 1 || h > 4 || v < 1 || v > 4) this.corrupt(`component ${id} has sampling factors ${h}x${v}`);
      if (quantTable > 3) this.corrupt(`component ${id} uses quantisation table ${quantTable}`);
      if (raw.some((c) => c.id === id)) this.corrupt(`component id ${id} appears twice`);
      raw.push({ id, h, v, quantTable });
    }
    this.options.checkFrame?.({ width, height, componentCount: count, precision });
    const hMax = Math.max(...raw.map((c) => c.h));
    const vMax = Math.max(...raw.map((c) => c.v));
    const mcusX = Math.ceil(width / (8 * hMax));
    const mcusY = Math.ceil(height / (8 * vMax));
    const components = raw.map((c) => ({
      ...c,
      width: Math.ceil((width * c.h) / hMax),
      height: Math.ceil((height * c.v) / vMax),
      plane: new Uint16Array(0),
      planeWidth: mcusX * c.h * 8,
      scanned: false,
    }));
    // Every coded block takes at least 2 bits (a DC code and an EOB code), which bounds the block count by the
    // stream length: a corrupt header cannot make us allocate or loop far beyond what the data could hold.
    const blocks = components.reduce((n, c) => n + Math.ceil(c.width / 8) * Math.ceil(c.height / 8), 0);
    if (blocks > this.end * 4) this.truncated(`far too early for ${width} x ${height} x ${count} samples (${blocks} blocks in ${this.end} bytes)`);
    for (const c of components) c.plane = new Uint16Array(c.planeWidth * mcusY * c.v * 8);
    this.frame = { precision, width, height, components, hMax, vMax, mcusX, mcusY };
    this.idct = new Idct(precision);
  }

  private readHuffmanTables(body: Uint8Array): void {
    let i = 0;
    while (i < body.length) {
      const tc = body[i]! >> 4;
      const th = body[i]! & 15;
      if (tc > 1 || th > 3) this.corrupt(`Huffman table class ${tc} / id ${th}`);
      if (i + 17 > body.length) this.corrupt('Huffman table segment too short');
      const counts = body.subarray(i + 1, i + 17);
      const total = counts.reduce((n, c) => n + c, 0);
      if (total > 256 || i + 17 + total > body.length) this.corrupt('Huffman table declares more symbols than its segment holds');
      const table = buildHuffmanTable(counts, body.subarray(i + 17, i + 17 + total));
      if (table === undefined) this.corrupt(`Huffman table ${tc === 0 ? 'DC' : 'AC'} ${th} has more codes than its lengths allow`);
      (tc === 0 ? this.dcTables : this.acTables)[th] = table;
      i += 17 + total;
    }
  }

  private readQuantTables(body: Uint8Array): void {
    let i = 0;
    while (i < body.length) {
      const pq = body[i]! >> 4;
      const tq = body[i]! & 15;
      if (pq > 1 || tq > 3) this.corrupt(`quantisation table precision ${pq} / id ${tq}`);
      const size = pq === 0 ? 64 : 128;
      if (i + 1 + size > body.length) this.corrupt('quantisation table segment too short');
      // Stored in zig-zag order; kept in natural order for the IDCT.
      const table = new Uint16Array(64);
      for (let k = 0; k < 64; k++) {
        table[ZIGZAG[k]!] = pq === 0 ? body[i + 1 + k]! : (body[i + 1 + 2 * k]! << 8) | body[i + 2 + 2 * k]!;
      }
      this.quantTables[tq] = table;
      i += 1 + size;
    }
  }

  private readRestartInterval(body: Uint8Array): void {
    if (body.length < 2) this.corrupt('DRI segment too short');
    this.restartInterval = (body[0]! << 8) | body[1]!;
  }

  private readScan(body: Uint8Array): void {
    const frame = this.frame;
    if (frame === undefined) return this.corrupt('a scan starts before the frame header');
    const count = body[0] ?? 0;
    if (count < 1 || count > frame.components.length || body.length !== 4 + 2 * count) this.corrupt(`scan header for ${count} components`);
    const comps: Component[] = [];
    const dc: HuffmanTable[] = [];
    const ac: HuffmanTable[] = [];
    const quant: Uint16Array[] = [];
    for (let i = 0; i < count; i++) {
      const id = body[1 + 2 * i]!;
      const tables = body[2 + 2 * i]!;
      const comp = frame.components.find((c) => c.id === id);
      if (comp === undefined) return this.corrupt(`scan names component ${id}, which the frame does not have`);
      if (comp.scanned || comps.includes(comp)) this.corrupt(`component ${id} is coded twice`);
      const dcTable = this.dcTables[tables >> 4];
      const acTable = this.acTables[tables & 15];
      if (dcTable === undefined || acTable === undefined) return this.corrupt(`component ${id} uses Huffman tables ${tables >> 4}/${tables & 15}, which are not defined`);
      const q = this.quantTables[comp.quantTable];
      if (q === undefined) return this.corrupt(`quantisation table ${comp.quantTable} is not defined`);
      comps.push(comp);
      dc.push(dcTable);
      ac.push(acTable);
      quant.push(q);
    }
    if (count > 1 && comps.reduce((n, c) => n + c.h * c.v, 0) > 10) this.corrupt('an interleaved MCU of more than 10 blocks');
    const ss = body[1 + 2 * count]!;
    const se = body[2 + 2 * count]!;
    const approximation = body[3 + 2 * count]!;
    if (ss !== 0 || se !== 63 || approximation !== 0) {
      // Sequential scans always code all 64 coefficients; libjpeg ignores these fields with a warning, since
      // some encoders write junk there (one DICOM test file has Se = 0), and so do we.
      log.debug({ file: this.file, ss, se, ah: approximation >> 4, al: approximation & 15 }, 'sequential JPEG scan declares spectral selection / approximation; ignored');
    }
    this.scans++;
    this.decodeScan(frame, comps, dc, ac, quant);
    for (const c of comps) c.scanned = true;
  }

  /** Decodes the entropy-coded data of one scan, which starts at `pos`, MCU by MCU (T.81 Annex F.2). */
  private decodeScan(frame: Frame, comps: Component[], dc: HuffmanTable[], ac: HuffmanTable[], quant: Uint16Array[]): void {
    const single = comps.length === 1 ? comps[0] : undefined;
    // A single-component scan is non-interleaved: its MCU is one block over the component's own grid (A.2.2).
    const mcusPerLine = single ? Math.ceil(single.width / 8) : frame.mcusX;
    const mcuCount = single ? mcusPerLine * Math.ceil(single.height / 8) : frame.mcusX * frame.mcusY;
    const predictors = new Int32Array(comps.length);
    this.bits = 0;
    this.bitCount = 0;
    this.padBits = 0;
    const interval = this.restartInterval;
    let nextRestart = 0;
    for (let m = 0; m < mcuCount; m++) {
      if (interval > 0 && m > 0 && m % interval === 0) {
        this.restart(nextRestart, m, mcuCount);
        nextRestart = (nextRestart + 1) & 7;
        predictors.fill(0);
      }
      const mx = m % mcusPerLine;
      const my = (m - mx) / mcusPerLine;
      for (let i = 0; i < comps.length; i++) {
        const c = comps[i]!;
        if (single) {
          this.decodeBlock(c, dc[i]!, ac[i]!, quant[i]!, predictors, i, mx, my, m, mcuCount);
          continue;
        }
        for (let v = 0; v < c.v; v++) {
          for (let h = 0; h < c.h; h++) this.decodeBlock(c, dc[i]!, ac[i]!, quant[i]!, predictors, i, mx * c.h + h, my * c.v + v, m, mcuCount);
        }
      }
    }
    this.endOfSegment(`scan ${this.scans}`);
  }

  private decodeBlock(c: Component, dc: HuffmanTable, ac: HuffmanTable, quant: Uint16Array, predictors: Int32Array, index: number, bx: number, by: number, mcu: number, mcuCount: number): void {
    const coef = this.coef;
    coef.fill(0);
    const t = this.decodeSymbol(dc, mcu, mcuCount);
    // DC differences have at most 11 (8-bit) or 15 (12-bit) magnitude bits (T.81 F.1.2.1).
    if (t > 15) this.corrupt(`DC difference category ${t} in MCU ${mcu}`);
    const diff = t === 0 ? 0 : this.receiveExtend(t, mcu, mcuCount);
    const dcValue = predictors[index]! + diff;
    predictors[index] = dcValue;
    coef[0] = dcValue;
    for (let k = 1; k < 64; ) {
      const rs = this.decodeSymbol(ac, mcu, mcuCount);
      const size = rs & 15;
      const run = rs >> 4;
      if (size === 0) {
        if (run !== 15) break; // EOB
        k += 16; // ZRL: sixteen zeros
        continue;
      }
      k += run;
      if (k > 63) this.corrupt(`AC coefficients run past the end of a block in MCU ${mcu}`);
      coef[ZIGZAG[k]!] = this.receiveExtend(size, mcu, mcuCount);
      k++;
    }
    this.idct!.run(coef, quant, c.plane, by * 8 * c.planeWidth + bx * 8, c.planeWidth);
  }

  /** Tops the bit buffer up to more than 24 bits, inventing zero bytes (counted in padBits) past a marker or the end. */
  private fill(): void {
    const d = this.data;
    while (this.bitCount <= 24) {
      let byte = 0;
      if (this.padBits === 0 && this.pos < this.end) {
        const b = d[this.pos]!;
        if (b !== 0xff) {
          byte = b;
          this.pos++;
        } else if (this.pos + 1 < this.end && d[this.pos + 1] === 0) {
          byte = 0xff; // stuffed byte
          this.pos += 2;
        } else {
          this.padBits += 8; // a marker: the segment's data ends here; pos stays on it
        }
      } else {
        this.padBits += 8;
      }
      this.bits = (this.bits << 8) | byte;
      this.bitCount += 8;
    }
  }

  private consume(n: number, mcu: number, mcuCount: number): void {
    this.bitCount -= n;
    if (this.bitCount < this.padBits) this.dataRanOut(mcu, mcuCount);
  }

  private dataRanOut(mcu: number, mcuCount: number): never {
    if (this.pos >= this.end) this.truncated(`inside the entropy-coded data of scan ${this.scans}, in MCU ${mcu} of ${mcuCount}`);
    return this.fail('corrupt', `has entropy-coded data that stops at marker ${markerName(this.data[this.pos + 1] ?? 0)} in scan ${this.scans}, MCU ${mcu} of ${mcuCount}; data is missing`);
  }

  private decodeSymbol(table: HuffmanTable, mcu: number, mcuCount: number): number {
    if (this.bitCount < 16) this.fill();
    const entry = table.lookup[(this.bits >>> (this.bitCount - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1)]!;
    if (entry !== 0) {
      this.consume(entry >> 8, mcu, mcuCount);
      return entry & 0xff;
    }
    for (let length = LOOKUP_BITS + 1; length <= 16; length++) {
      const code = (this.bits >>> (this.bitCount - length)) & ((1 << length) - 1);
      if (code <= table.maxCode[length]!) {
        this.consume(length, mcu, mcuCount);
        return table.values[code + table.valueOffset[length]!] ?? 0;
      }
    }
    // Bits that match no code: either invented padding (the data ran out) or damage.
    if (this.bitCount - 16 < this.padBits) this.dataRanOut(mcu, mcuCount);
    return this.corrupt(`invalid Huffman code in scan ${this.scans}, MCU ${mcu}`);
  }

  /** Reads `size` (1..15) magnitude bits and sign-extends them (T.81 F.2.2.1 EXTEND). */
  private receiveExtend(size: number, mcu: number, mcuCount: number): number {
    if (this.bitCount < 16) this.fill();
    const value = (this.bits >>> (this.bitCount - size)) & ((1 << size) - 1);
    this.consume(size, mcu, mcuCount);
    return value < 1 << (size - 1) ? value - (1 << size) + 1 : value;
  }

  /**
   * Checks that the data of a restart interval or scan ended where the MCU count says: fewer than 8 unused bits
   * (the byte padding) and then a marker. Anything else means the entropy decoder and the data disagree.
   */
  private endOfSegment(what: string): void {
    const d = this.data;
    const leftover = this.bitCount - this.padBits;
    this.bits = 0;
    this.bitCount = 0;
    this.padBits = 0;
    if (this.pos >= this.end) this.truncated(`after ${what}, before the EOI marker`);
    if (leftover >= 8 || d[this.pos] !== 0xff || d[this.pos + 1] === 0) {
      this.corrupt(`${what} has entropy-coded data left over after its last MCU`);
    }
  }

  private restart(expected: number, mcu: number, mcuCount: number): void {
    this.endOfSegment(`restart interval ending at MCU ${mcu}`);
    const d = this.data;
    while (this.pos < this.end && d[this.pos] === 0xff) this.pos++;
    if (this.pos >= this.end) this.truncated(`at MCU ${mcu} of ${mcuCount}, where a restart marker was due`);
    const code = d[this.pos]!;
    if (code !== 0xd0 + expected) this.corrupt(`expected restart marker RST${expected} before MCU ${mcu}, found ${markerName(code)}`);
    this.pos++;
  }

  private finish(): JpegImage {
    const frame = this.frame;
    if (frame === undefined) return this.corrupt('no frame header (SOF0 or SOF1) before EOI');
    const missing = frame.components.filter((c) => !c.scanned).map((c) => c.id);
    if (missing.length > 0) this.fail('corrupt', `ends before component(s) ${missing.join(', ')} were coded`);
    const { width, height, components } = frame;
    const count = components.length;
    const samples = new Uint16Array(width * height * count);
    components.forEach((c, i) => upsampleInto(c, frame, samples, i, count));
    const convertedToRgb = count === 3 && colourIsYCbCr(components.map((c) => c.id), this.sawJfif, this.adobeTransform);
    if (convertedToRgb) yccToRgb(samples, frame.precision);
    return { width, height, componentCount: count, precision: frame.precision, samples, convertedToRgb };
  }
}

/**
 * Writes component `c` at full resolution into the interleaved output, upsampling as libjpeg-turbo does by default
 * (jdsample.c): triangle ("fancy") filters for 2:1 horizontal, vertical or both, plain replication for any other
 * integral or fractional ratio. Edges replicate the last real sample row / column.
 */
function upsampleInto(c: Component, frame: Frame, out: Uint16Array, sample: number, stride: number): void {
  const { width, height, hMax, vMax } = frame;
  const { plane, planeWidth: pw, width: cw, height: ch } = c;
  const h2 = c.h * 2 === hMax;
  const v2 = c.v * 2 === vMax;
  const hSame = c.h === hMax;
  const vSame = c.v === vMax;
  // Rows of the upsampled component, one output row at a time; columns past `width` are dropped.
  const row = new Uint16Array(Math.max(width, 2 * cw));
  const xMap = new Int32Array(width);
  for (let x = 0; x < width; x++) xMap[x] = Math.floor((x * c.h) / hMax);
  for (let y = 0; y < height; y++) {
    if (h2 && v2 && cw > 2) {
      // h2v2 fancy: vertical 3:1 blend with the nearer neighbouring row, then horizontal 3:1 with rounding 8 / 7.
      const r = y >> 1;
      const near = r * pw;
      const far = ((y & 1) === 0 ? Math.max(r - 1, 0) : Math.min(r + 1, ch - 1)) * pw;
      let thisSum = plane[near]! * 3 + plane[far]!;
      let nextSum = plane[near + 1]! * 3 + plane[far + 1]!;
      row[0] = (thisSum * 4 + 8) >> 4;
      row[1] = (thisSum * 3 + nextSum + 7) >> 4;
      let lastSum = thisSum;
      thisSum = nextSum;
      for (let x = 2; x < cw; x++) {
        nextSum = plane[near + x]! * 3 + plane[far + x]!;
        row[2 * x - 2] = (thisSum * 3 + lastSum + 8) >> 4;
        row[2 * x - 1] = (thisSum * 3 + nextSum + 7) >> 4;
        lastSum = thisSum;
        thisSum = nextSum;
      }
      row[2 * cw - 2] = (thisSum * 3 + lastSum + 8) >> 4;
      row[2 * cw - 1] = (thisSum * 4 + 7) >> 4;
    } else if (h2 && vSame && cw > 2) {
      // h2v1 fancy: each output sample is 3/4 of the nearer input sample plus 1/4 of the further one.
      const base = y * pw;
      let value = plane[base]!;
      row[0] = value;
      row[1] = (value * 3 + plane[base + 1]! + 2) >> 2;
      for (let x = 1; x < cw - 1; x++) {
        value = plane[base + x]! * 3;
        row[2 * x] = (value + plane[base + x - 1]! + 1) >> 2;
        row[2 * x + 1] = (value + plane[base + x + 1]! + 2) >> 2;
      }
      value = plane[base + cw - 1]!;
      row[2 * cw - 2] = (value * 3 + plane[base + cw - 2]! + 1) >> 2;
      row[2 * cw - 1] = value;
    } else if (hSame && v2) {
      // h1v2 fancy: 3:1 blend with the nearer neighbouring row, rounding 1 above and 2 below.
      const r = y >> 1;
      const upper = (y & 1) === 0;
      const near = r * pw;
      const far = (upper ? Math.max(r - 1, 0) : Math.min(r + 1, ch - 1)) * pw;
      const bias = upper ? 1 : 2;
      for (let x = 0; x < cw; x++) row[x] = (plane[near + x]! * 3 + plane[far + x]! + bias) >> 2;
    } else {
      const base = Math.floor((y * c.v) / vMax) * pw;
      if (hSame) for (let x = 0; x < width; x++) row[x] = plane[base + x]!;
      else for (let x = 0; x < width; x++) row[x] = plane[base + xMap[x]!]!;
    }
    let o = y * width * stride + sample;
    for (let x = 0; x < width; x++, o += stride) out[o] = row[x]!;
  }
}

/**
 * YCbCr to RGB with libjpeg's fixed-point arithmetic (jdcolor.c, 16 fraction bits, rounded), in place on
 * interleaved samples, so 12-bit results agree with libjpeg-built decoders to the last bit.
 */
function yccToRgb(samples: Uint16Array, precision: number): void {
  const center = 1 << (precision - 1);
  const max = (1 << precision) - 1;
  const half = 1 << 15;
  for (let i = 0; i + 2 < samples.length; i += 3) {
    const y = samples[i]!;
    const cb = samples[i + 1]! - center;
    const cr = samples[i + 2]! - center;
    samples[i] = clamp(y + ((91881 * cr + half) >> 16), max);
    samples[i + 1] = clamp(y + ((-22554 * cb + half - 46802 * cr) >> 16), max);
    samples[i + 2] = clamp(y + ((116130 * cb + half) >> 16), max);
  }
}

/**
 * Decodes a sequential DCT, Huffman-coded JPEG stream (8- or 12-bit, 1 or 3 components). Throws DicomRejection
 * ('corrupt' for damaged or missing data, 'unsupported-pixel-format' for coding processes it does not implement).
 */
export function decodeJpegSequential(stream: Uint8Array, file: string, options: JpegDecodeOptions = {}): JpegImage {
  return new JpegDecoder(stream, file, options).decode();
}

/**
 * One DICOM frame of 12-bit JPEG Extended (Process 4), as the JPEG codec hands it over: the frame header is checked
 * against the DICOM header before decoding, and samples come back at Bits Allocated, little endian, interleaved.
 */
export function decodeJpegExtendedFrame(input: CodecInput, encoded: Uint8Array, frameIndex: number): CodecFrame {
  const { header: h, file } = input;
  const image = decodeJpegSequential(encoded, file, {
    label: `JPEG frame ${frameIndex}`,
    checkFrame: (frame) => checkGeometry(file, h, { width: frame.width, height: frame.height, componentCount: frame.componentCount, bitsPerSample: frame.precision }, frameIndex, 'JPEG'),
  });
  const { samples } = image;
  const bytes = new Uint8Array(samples.length * 2);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i]!;
    bytes[2 * i] = v & 0xff;
    bytes[2 * i + 1] = v >> 8;
  }
  return { bytes: h.bitsAllocated === 16 ? bytes : widenSamples(bytes, 16, h, samples.length), planar: false };
}
