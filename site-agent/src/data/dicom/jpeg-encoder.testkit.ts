/**
 * A small reference encoder for sequential DCT JPEG (T.81 baseline / extended, Huffman), for testing the decoder
 * on streams whose every parameter the test chooses: 8 or 12 bits, any sampling factors, interleaved or one scan
 * per component, restart intervals, 8- or 16-bit quantisation tables and optimal Huffman tables (T.81 Annex K.2,
 * which yields codes longer than the decoder's 9-bit lookup). It also returns the exact (floating-point) inverse
 * DCT of the quantised coefficients, which a correct decoder must reproduce to within its IDCT rounding.
 * Excluded from the build.
 */

const ZIGZAG = [
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
  28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
  54, 47, 55, 62, 63,
];

export interface TestComponent {
  readonly id: number;
  readonly h: number;
  readonly v: number;
  /** Samples on the component's own grid, ceil(width * h / hMax) x ceil(height * v / vMax), row by row. */
  readonly samples: ArrayLike<number>;
  /** 64 quantisation steps in natural (row-major) order. */
  readonly quant: ArrayLike<number>;
}

export interface EncodeOptions {
  readonly precision: 8 | 12;
  readonly width: number;
  readonly height: number;
  readonly components: readonly TestComponent[];
  readonly restartInterval?: number;
  /** One scan for all components (default) or one scan per component. */
  readonly interleaved?: boolean;
  /** SOF marker code; defaults to SOF1 for 12-bit and SOF0 for 8-bit. */
  readonly sofMarker?: number;
  /** Complete marker segments (APPn, COM, ...) written right after SOI. */
  readonly extraSegments?: readonly Uint8Array[];
  /** Ss, Se and Ah/Al bytes written in every SOS (sequential mode wants 0, 63, 0). */
  readonly scanTail?: readonly [number, number, number];
  /** Write 16-bit quantisation tables even when every step fits in 8 bits. */
  readonly quant16?: boolean;
}

export interface Encoded {
  readonly stream: Uint8Array;
  /** Per component, on its own grid: exact IDCT of the dequantised coefficients, rounded and clamped. */
  readonly reference: Float64Array[];
  /** Longest Huffman code in any table written. */
  readonly maxCodeLength: number;
}

export const componentSize = (o: Pick<EncodeOptions, 'width' | 'height' | 'components'>, c: TestComponent): [number, number] => {
  const hMax = Math.max(...o.components.map((x) => x.h));
  const vMax = Math.max(...o.components.map((x) => x.v));
  return [Math.ceil((o.width * c.h) / hMax), Math.ceil((o.height * c.v) / vMax)];
};

/** cos table: COS[x * 8 + u] = C(u) cos((2x + 1) u pi / 16) / 2, so a 2-D transform is a product of two. */
const COS = new Float64Array(64);
for (let x = 0; x < 8; x++) {
  for (let u = 0; u < 8; u++) COS[x * 8 + u] = ((u === 0 ? Math.SQRT1_2 : 1) * Math.cos(((2 * x + 1) * u * Math.PI) / 16)) / 2;
}

const magnitudeBits = (v: number): number => (v === 0 ? 0 : Math.floor(Math.log2(Math.abs(v))) + 1);

interface Table {
  readonly counts: number[];
  readonly values: number[];
  readonly code: Map<number, { code: number; length: number }>;
}

/** Optimal code lengths limited to 16 bits, as T.81 Annex K.2 and libjpeg's jpeg_gen_optimal_table build them. */
function optimalTable(frequencies: readonly number[]): Table {
  const freq = [...frequencies, 1]; // symbol 256 reserves the all-ones code
  const codeSize = new Array<number>(257).fill(0);
  const others = new Array<number>(257).fill(-1);
  for (;;) {
    let c1 = -1;
    let best = Infinity;
    for (let i = 0; i <= 256; i++) if ((freq[i] ?? 0) > 0 && (freq[i] ?? 0) <= best) [best, c1] = [freq[i] ?? 0, i];
    let c2 = -1;
    best = Infinity;
    for (let i = 0; i <= 256; i++) if ((freq[i] ?? 0) > 0 && (freq[i] ?? 0) <= best && i !== c1) [best, c2] = [freq[i] ?? 0, i];
    if (c2 < 0) break;
    freq[c1] = (freq[c1] ?? 0) + (freq[c2] ?? 0);
    freq[c2] = 0;
    codeSize[c1] = (codeSize[c1] ?? 0) + 1;
    while ((others[c1] ?? -1) >= 0) {
      c1 = others[c1] ?? -1;
      codeSize[c1] = (codeSize[c1] ?? 0) + 1;
    }
    others[c1] = c2;
    codeSize[c2] = (codeSize[c2] ?? 0) + 1;
    while ((others[c2] ?? -1) >= 0) {
      c2 = others[c2] ?? -1;
      codeSize[c2] = (codeSize[c2] ?? 0) + 1;
    }
  }
  const bits = new Array<number>(33).fill(0);
  for (const size of codeSize) if (size > 0) bits[size] = (bits[size] ?? 0) + 1;
  for (let i = 32; i > 16; i--) {
    while ((bits[i] ?? 0) > 0) {
      let j = i - 2;
      while (bits[j] === 0) j--;
      bits[i] = (bits[i] ?? 0) - 2;
      bits[i - 1] = (bits[i - 1] ?? 0) + 1;
      bits[j + 1] = (bits[j + 1] ?? 0) + 2;
      bits[j] = (bits[j] ?? 0) - 1;
    }
  }
  let last = 16;
  while (bits[last] === 0) last--;
  bits[last] = (bits[last] ?? 0) - 1;
  const values: number[] = [];
  for (let length = 1; length <= 32; length++) for (let s = 0; s < 256; s++) if (codeSize[s] === length) values.push(s);
  const counts = bits.slice(1, 17);
  const code = new Map<number, { code: number; length: number }>();
  let next = 0;
  let k = 0;
  for (let length = 1; length <= 16; length++) {
    for (let n = 0; n < (counts[length - 1] ?? 0); n++) code.set(values[k++] ?? -1, { code: next++, length });
    next <<= 1;
  }
  return { counts, values, code };
}

class BitWriter {
  readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;

  write(value: number, length: number): void {
    for (let i = length - 1; i >= 0; i--) {
      this.acc = (this.acc << 1) | ((value >> i) & 1);
      if (++this.n === 8) this.emit();
    }
  }

  private emit(): void {
    this.bytes.push(this.acc);
    if (this.acc === 0xff) this.bytes.push(0); // byte stuffing
    this.acc = 0;
    this.n = 0;
  }

  /** Pads the last byte with 1 bits (T.81 F.1.2.3). */
  flush(): void {
    while (this.n !== 0) this.write(1, 1);
  }

  marker(code: number): void {
    this.flush();
    this.bytes.push(0xff, code);
  }
}

type Op = { table: 'dc' | 'ac'; component: number; symbol: number; extra: number; extraLength: number } | { restart: number };

const segment = (marker: number, body: readonly number[]): number[] => [0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body];

export function encodeJpeg(o: EncodeOptions): Encoded {
  const { precision, width, height, components } = o;
  const hMax = Math.max(...components.map((c) => c.h));
  const vMax = Math.max(...components.map((c) => c.v));
  const mcusX = Math.ceil(width / (8 * hMax));
  const mcusY = Math.ceil(height / (8 * vMax));
  const center = 1 << (precision - 1);
  const max = (1 << precision) - 1;

  // Quantised coefficients of every block of the MCU-padded grid (a superset of the non-interleaved grid),
  // edges padded by replication as encoders do.
  const coefficients = components.map((c) => {
    const [cw, ch] = componentSize(o, c);
    const bw = mcusX * c.h;
    const bh = mcusY * c.v;
    const out = new Int32Array(bw * bh * 64);
    for (let by = 0; by < bh; by++) {
      for (let bx = 0; bx < bw; bx++) {
        for (let v = 0; v < 8; v++) {
          for (let u = 0; u < 8; u++) {
            let sum = 0;
            for (let y = 0; y < 8; y++) {
              const sy = Math.min(by * 8 + y, ch - 1);
              for (let x = 0; x < 8; x++) {
                const sx = Math.min(bx * 8 + x, cw - 1);
                sum += ((c.samples[sy * cw + sx] ?? 0) - center) * (COS[x * 8 + u] ?? 0) * (COS[y * 8 + v] ?? 0);
              }
            }
            out[(by * bw + bx) * 64 + v * 8 + u] = Math.round(sum / (c.quant[v * 8 + u] ?? 1));
          }
        }
      }
    }
    return { out, bw, cw, ch };
  });

  const reference = components.map((c, ci) => {
    const { out, bw, cw, ch } = coefficients[ci] ?? { out: new Int32Array(0), bw: 0, cw: 0, ch: 0 };
    const rec = new Float64Array(cw * ch);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const base = (Math.floor(y / 8) * bw + Math.floor(x / 8)) * 64;
        let sum = 0;
        for (let v = 0; v < 8; v++) {
          for (let u = 0; u < 8; u++) {
            sum += (out[base + v * 8 + u] ?? 0) * (c.quant[v * 8 + u] ?? 1) * (COS[(x % 8) * 8 + u] ?? 0) * (COS[(y % 8) * 8 + v] ?? 0);
          }
        }
        rec[y * cw + x] = Math.min(max, Math.max(0, Math.round(sum + center)));
      }
    }
    return rec;
  });

  // Symbols, scan by scan, in MCU order.
  const scans = o.interleaved === false || components.length === 1 ? components.map((_, i) => [i]) : [components.map((_, i) => i)];
  const scanOps = scans.map((members) => {
    const ops: Op[] = [];
    const predictors = members.map(() => 0);
    const single = members.length === 1 ? components[members[0] ?? 0] : undefined;
    const [scw, sch] = single ? componentSize(o, single) : [0, 0];
    const perLine = single ? Math.ceil(scw / 8) : mcusX;
    const count = single ? perLine * Math.ceil(sch / 8) : mcusX * mcusY;
    const block = (mi: number, ci: number, bx: number, by: number): void => {
      const { out, bw } = coefficients[ci] ?? { out: new Int32Array(0), bw: 0 };
      const base = (by * bw + bx) * 64;
      const diff = (out[base] ?? 0) - (predictors[mi] ?? 0);
      predictors[mi] = out[base] ?? 0;
      const size = magnitudeBits(diff);
      ops.push({ table: 'dc', component: ci, symbol: size, extra: diff < 0 ? diff + (1 << size) - 1 : diff, extraLength: size });
      let run = 0;
      for (let k = 1; k < 64; k++) {
        const value = out[base + (ZIGZAG[k] ?? 0)] ?? 0;
        if (value === 0) {
          run++;
          continue;
        }
        for (; run > 15; run -= 16) ops.push({ table: 'ac', component: ci, symbol: 0xf0, extra: 0, extraLength: 0 });
        const s = magnitudeBits(value);
        ops.push({ table: 'ac', component: ci, symbol: (run << 4) | s, extra: value < 0 ? value + (1 << s) - 1 : value, extraLength: s });
        run = 0;
      }
      if (run > 0) ops.push({ table: 'ac', component: ci, symbol: 0, extra: 0, extraLength: 0 });
    };
    let restart = 0;
    for (let m = 0; m < count; m++) {
      const ri = o.restartInterval ?? 0;
      if (ri > 0 && m > 0 && m % ri === 0) {
        ops.push({ restart: restart });
        restart = (restart + 1) & 7;
        predictors.fill(0);
      }
      const mx = m % perLine;
      const my = Math.floor(m / perLine);
      members.forEach((ci, mi) => {
        const c = components[ci];
        if (c === undefined) return;
        if (single) return block(mi, ci, mx, my);
        for (let v = 0; v < c.v; v++) for (let h = 0; h < c.h; h++) block(mi, ci, mx * c.h + h, my * c.v + v);
      });
    }
    return { members, ops };
  });

  // Table 0 for the first component, table 1 for the others, each built from the symbols it codes.
  const tableOf = (ci: number): number => (ci === 0 ? 0 : 1);
  const tableIds = [...new Set(components.map((_, i) => tableOf(i)))];
  const freqs = { dc: tableIds.map(() => new Array<number>(256).fill(0)), ac: tableIds.map(() => new Array<number>(256).fill(0)) };
  for (const { ops } of scanOps) {
    for (const op of ops) {
      if ('restart' in op) continue;
      const f = freqs[op.table][tableOf(op.component)];
      if (f) f[op.symbol] = (f[op.symbol] ?? 0) + 1;
    }
  }
  const tables = { dc: freqs.dc.map(optimalTable), ac: freqs.ac.map(optimalTable) };

  const out: number[] = [0xff, 0xd8];
  for (const s of o.extraSegments ?? []) out.push(...s);
  const wide = o.quant16 === true || components.some((c) => Array.from(c.quant).some((q) => q > 255));
  for (const [ci, c] of components.entries()) {
    const body = [(wide ? 0x10 : 0) | ci];
    for (let k = 0; k < 64; k++) {
      const q = c.quant[ZIGZAG[k] ?? 0] ?? 1;
      if (wide) body.push(q >> 8, q & 0xff);
      else body.push(q);
    }
    out.push(...segment(0xdb, body));
  }
  out.push(...segment(o.sofMarker ?? (precision === 8 ? 0xc0 : 0xc1), [
    precision, height >> 8, height & 0xff, width >> 8, width & 0xff, components.length,
    ...components.flatMap((c, ci) => [c.id, (c.h << 4) | c.v, ci]),
  ]));
  for (const [tc, list] of [[0, tables.dc], [1, tables.ac]] as const) {
    list.forEach((t, th) => out.push(...segment(0xc4, [(tc << 4) | th, ...t.counts, ...t.values])));
  }
  if (o.restartInterval) out.push(...segment(0xdd, [o.restartInterval >> 8, o.restartInterval & 0xff]));
  const [ss, se, ahal] = o.scanTail ?? [0, 63, 0];
  for (const { members, ops } of scanOps) {
    out.push(...segment(0xda, [members.length, ...members.flatMap((ci) => [components[ci]?.id ?? 0, (tableOf(ci) << 4) | tableOf(ci)]), ss, se, ahal]));
    const w = new BitWriter();
    for (const op of ops) {
      if ('restart' in op) {
        w.marker(0xd0 + op.restart);
        continue;
      }
      const entry = tables[op.table][tableOf(op.component)]?.code.get(op.symbol);
      if (entry === undefined) throw new Error(`no code for symbol ${op.symbol}`);
      w.write(entry.code, entry.length);
      w.write(op.extra, op.extraLength);
    }
    w.flush();
    out.push(...w.bytes);
  }
  out.push(0xff, 0xd9);
  const maxCodeLength = Math.max(...[...tables.dc, ...tables.ac].map((t) => t.counts.reduce((m, n, i) => (n > 0 ? i + 1 : m), 0)));
  return { stream: Uint8Array.from(out), reference, maxCodeLength };
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A smooth image with texture and noise, in [0, max]: realistic enough to need every kind of Huffman symbol. */
export function testImage(width: number, height: number, max: number, seed: number, noise = 0.05): Uint16Array {
  const next = random(seed);
  const out = new Uint16Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const smooth = 0.5 + 0.3 * Math.sin(x / 5 + seed) * Math.cos(y / 7) + 0.15 * ((x + y) / (width + height) - 0.5);
      const edge = (x > width / 3 && y < height / 2) ? 0.1 : 0;
      const value = (smooth + edge + noise * (next() - 0.5)) * max;
      out[y * width + x] = Math.min(max, Math.max(0, Math.round(value)));
    }
  }
  return out;
}

export const flatQuant = (q: number): number[] => new Array<number>(64).fill(q);

/** The T.81 Annex K.1 luminance table, scaled (×16 suits 12-bit data). */
export const luminanceQuant = (scale: number): number[] =>
  [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
    .map((q) => Math.max(1, Math.round(q * scale)));
