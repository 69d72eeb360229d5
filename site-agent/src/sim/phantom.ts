import type { Rng } from './rng.js';

/**
 * Synthetic "body slice" phantoms in display intensity units (0 = black, 1 = white), before any scanner
 * effects. A body-like ellipse with a fat rim, smooth tissue texture, a few organs and small elongated vessel
 * cross-sections; the 'lesion' class adds one round blob whose size and contrast come from a LesionAppearance
 * (bright or dark, large or small, as the hospital's case mix has it). Vessels are as bright as bright lesions,
 * so the brightest pixel alone does not give the answer: a model has to look at size and shape against texture.
 */

/**
 * What lesions look like at one hospital, in units of a 64-pixel image (scaled with the image size) and display
 * intensity. A negative contrast draws a hypodense (darker than tissue) lesion.
 */
export interface LesionAppearance {
  readonly radius: readonly [number, number];
  readonly contrast: readonly [number, number];
}

/** Refuses ranges that are empty, reversed, too small to draw or that mix bright and dark lesions. */
export function checkLesionAppearance(appearance: LesionAppearance, where: string): void {
  const [rLow, rHigh] = appearance.radius;
  const [cLow, cHigh] = appearance.contrast;
  if (!(rLow >= 1 && rHigh <= 8 && rLow <= rHigh)) throw new RangeError(`${where}: lesion radius must be an increasing range within [1, 8], got [${rLow}, ${rHigh}]`);
  if (!(cLow <= cHigh && Math.abs(cLow) <= 1 && Math.abs(cHigh) <= 1)) throw new RangeError(`${where}: lesion contrast must be an increasing range within [-1, 1], got [${cLow}, ${cHigh}]`);
  if (cLow * cHigh <= 0) throw new RangeError(`${where}: lesion contrast must be all bright or all dark (both ends non-zero, one sign), got [${cLow}, ${cHigh}]`);
}

export interface LesionPlacement {
  readonly x: number;
  readonly y: number;
  readonly radius: number;
  readonly contrast: number;
}

export interface Phantom {
  readonly size: number;
  /** size*size display intensities, row-major, roughly in [0, 1]. */
  readonly intensity: Float32Array;
  /** Where the lesion was drawn (undefined for the normal class), for tests and debugging. */
  readonly lesion: LesionPlacement | undefined;
}

export interface PhantomOptions {
  readonly size: number;
  /** The lesion to draw; undefined draws the normal class. */
  readonly lesion: LesionAppearance | undefined;
}

const BACKGROUND = 0.03;
const TISSUE = 0.42;
const RIM = 0.3;

/** Smooth random field in [-1, 1]: bilinear value noise with smoothstep, on a coarse grid. */
function valueNoise(size: number, cells: number, rng: Rng): Float32Array {
  const grid = new Float32Array((cells + 1) * (cells + 1));
  for (let i = 0; i < grid.length; i++) grid[i] = rng.uniform(-1, 1);
  const out = new Float32Array(size * size);
  const smooth = (t: number) => t * t * (3 - 2 * t);
  for (let y = 0; y < size; y++) {
    const gy = (y / size) * cells;
    const y0 = Math.floor(gy);
    const ty = smooth(gy - y0);
    for (let x = 0; x < size; x++) {
      const gx = (x / size) * cells;
      const x0 = Math.floor(gx);
      const tx = smooth(gx - x0);
      const g = (cx: number, cy: number) => grid[cy * (cells + 1) + cx] ?? 0;
      const top = g(x0, y0) + (g(x0 + 1, y0) - g(x0, y0)) * tx;
      const bottom = g(x0, y0 + 1) + (g(x0 + 1, y0 + 1) - g(x0, y0 + 1)) * tx;
      out[y * size + x] = top + (bottom - top) * ty;
    }
  }
  return out;
}

/** Normalised elliptical radius function: < 1 inside the ellipse. Trig is hoisted out of the pixel loop. */
function ellipse(cx: number, cy: number, a: number, b: number, angle: number): (x: number, y: number) => number {
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  return (x, y) => {
    const dx = x - cx;
    const dy = y - cy;
    const u = (dx * c + dy * s) / a;
    const v = (-dx * s + dy * c) / b;
    return Math.sqrt(u * u + v * v);
  };
}

/** Soft-edged ellipse weight: 1 inside, 0 outside, ~1 pixel transition so edges are not aliased. */
function softInside(r: number, a: number): number {
  const edge = (r - 1) * a; // approximate distance to the edge in pixels
  return Math.min(1, Math.max(0, 0.5 - edge));
}

export function generatePhantom(options: PhantomOptions, rng: Rng): Phantom {
  const { size } = options;
  const scale = size / 64;
  const img = new Float32Array(size * size).fill(BACKGROUND);

  const cx = size / 2 + rng.uniform(-2, 2) * scale;
  const cy = size / 2 + rng.uniform(-2, 2) * scale;
  const a = rng.uniform(0.36, 0.44) * size;
  const b = rng.uniform(0.27, 0.34) * size;
  const angle = rng.uniform(-0.25, 0.25);
  const coarse = valueNoise(size, 4, rng);
  const fine = valueNoise(size, 11, rng);
  const inside = new Float32Array(size * size);
  const body = ellipse(cx, cy, a, b, angle);

  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const r = body(x, y);
      const w = softInside(r, Math.min(a, b));
      inside[i] = w;
      // Fat rim just inside the skin line, then parenchyma with two scales of texture.
      const rim = r > 0.86 ? RIM : TISSUE;
      const tissue = rim + 0.05 * (coarse[i] ?? 0) + 0.035 * (fine[i] ?? 0);
      img[i] = BACKGROUND + (tissue - BACKGROUND) * w;
    }
  }

  // Organs: larger soft ellipses, some brighter and some darker than parenchyma.
  const organs = 2 + rng.int(2);
  for (let k = 0; k < organs; k++) {
    const oa = rng.uniform(0.08, 0.16) * size;
    const ob = oa * rng.uniform(0.55, 0.95);
    const ox = cx + rng.uniform(-0.45, 0.45) * a;
    const oy = cy + rng.uniform(-0.45, 0.45) * b;
    const oangle = rng.uniform(0, Math.PI);
    const delta = rng.next() < 0.5 ? rng.uniform(0.05, 0.1) : -rng.uniform(0.05, 0.12);
    const organ = ellipse(ox, oy, oa, ob, oangle);
    paint(img, inside, size, [ox, oy, oa + 2], (x, y) => softInside(organ(x, y), ob) * delta);
  }

  // Vessels: thin elongated bright structures, the distractors a lesion detector must not fire on.
  const vessels = 1 + rng.int(3);
  for (let k = 0; k < vessels; k++) {
    const length = rng.uniform(4.5, 8) * scale;
    const width = rng.uniform(0.9, 1.4) * scale;
    const vx = cx + rng.uniform(-0.6, 0.6) * a;
    const vy = cy + rng.uniform(-0.6, 0.6) * b;
    const vangle = rng.uniform(0, Math.PI);
    const delta = rng.uniform(0.16, 0.26);
    const vessel = ellipse(vx, vy, length, width, vangle);
    paint(img, inside, size, [vx, vy, 2 * length], (x, y) => {
      const r = vessel(x, y);
      return Math.exp(-2 * r * r) * delta;
    });
  }

  let lesion: LesionPlacement | undefined;
  if (options.lesion !== undefined) {
    const radius = rng.uniform(...options.lesion.radius) * scale;
    const contrast = rng.uniform(...options.lesion.contrast);
    // Keep the whole blob inside the body so it is never cut by the skin line.
    const safe = ellipse(cx, cy, a - radius - 3 * scale, b - radius - 3 * scale, angle);
    // Rejection sampling inside the shrunken body ellipse; the body centre is the (never needed) fallback.
    let lx = cx;
    let ly = cy;
    for (let tries = 0; tries < 100; tries++) {
      const x = cx + rng.uniform(-0.7, 0.7) * a;
      const y = cy + rng.uniform(-0.7, 0.7) * b;
      if (safe(x, y) < 1) {
        lx = x;
        ly = y;
        break;
      }
    }
    paint(img, inside, size, [lx, ly, 2 * radius], (x, y) => {
      // Super-Gaussian: a flat-topped nodule with a soft rim, unlike the thin Gaussian vessel profile.
      const d2 = ((x - lx) ** 2 + (y - ly) ** 2) / (radius * radius);
      return Math.exp(-0.7 * d2 * d2) * contrast;
    });
    lesion = { x: lx, y: ly, radius, contrast };
  }
  return { size, intensity: img, lesion };
}

/**
 * Adds a structure weighted by the body mask so nothing is drawn in the air around the body. Only the square
 * `[cx, cy, reach]` (centre and half-side) is visited; every structure here is negligible beyond its reach.
 */
function paint(
  img: Float32Array,
  inside: Float32Array,
  size: number,
  [cx, cy, reach]: readonly [number, number, number],
  value: (x: number, y: number) => number,
): void {
  const x0 = Math.max(0, Math.floor(cx - reach));
  const x1 = Math.min(size - 1, Math.ceil(cx + reach));
  const y0 = Math.max(0, Math.floor(cy - reach));
  const y1 = Math.min(size - 1, Math.ceil(cy + reach));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const i = y * size + x;
      const w = inside[i] ?? 0;
      if (w > 0) img[i] = (img[i] ?? 0) + value(x, y) * w;
    }
  }
}
