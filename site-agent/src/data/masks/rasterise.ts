/** A polygon's vertices in pixel coordinates: x is the column, y the row, pixel centres at whole numbers. */
export type Polygon = readonly (readonly [number, number])[];

/**
 * Vertices are rounded to 1/1000 pixel first: contour points meant to lie on a pixel centre arrive a hair off it
 * after decimal-string rounding of mm coordinates and spacings, and would otherwise flip that centre's side.
 */
const VERTEX_GRID = 1000;
/** Edge crossings are rounded to 1e-6 pixel, which removes floating-point noise from the intersection. */
const CROSSING_GRID = 1e6;

interface Edge {
  readonly x0: number;
  readonly y0: number;
  readonly slope: number;
  /** Last row (inclusive) this edge crosses. */
  readonly lastRow: number;
}

const snap = (v: number, grid: number): number => Math.round(v * grid) / grid;

/**
 * Fills polygons by the even-odd rule, sampled at pixel centres. A pixel is inside when a ray from its centre
 * crosses the polygons' edges an odd number of times, so several contours combine by exclusive or: a contour
 * inside another cuts a hole, a contour inside that hole fills it again (the DICOM "XOR" technique for inner
 * contours). A centre that lies exactly on an edge follows the top-left rule: on a left or top edge it is inside,
 * on a right or bottom edge outside. So a square with corners on pixel centres 0 and 4 covers 4 x 4 pixels (its
 * area), shapes that share an edge do not both claim it, and the zero-width channel of a "keyhole" contour paints
 * nothing. Returns rows * columns values, 1 inside and 0 outside; parts outside the image are clipped.
 */
export function fillEvenOdd(polygons: readonly Polygon[], rows: number, columns: number): Uint8Array {
  const out = new Uint8Array(rows * columns);
  // Edges bucketed by the first row they cross (an active edge table), so each row only sees its own edges.
  const starting = new Map<number, Edge[]>();
  for (const polygon of polygons) {
    if (polygon.length < 3) continue;
    const points = polygon.map(([x, y]) => [snap(x, VERTEX_GRID), snap(y, VERTEX_GRID)] as const);
    points.forEach(([x0, y0], i) => {
      const [x1, y1] = points[(i + 1) % points.length] ?? [x0, y0];
      // Half-open in y: an edge crosses row r when r lies in [min y, max y), so horizontal edges cross none and
      // a vertex shared by two edges is counted once.
      if (y0 === y1) return;
      const first = Math.max(0, Math.ceil(Math.min(y0, y1)));
      const lastRow = Math.min(rows - 1, Math.ceil(Math.max(y0, y1)) - 1);
      if (first > lastRow) return;
      const edge: Edge = { x0, y0, slope: (x1 - x0) / (y1 - y0), lastRow };
      const bucket = starting.get(first);
      if (bucket === undefined) starting.set(first, [edge]);
      else bucket.push(edge);
    });
  }
  if (starting.size === 0) return out;
  let active: Edge[] = [];
  const firstRow = Math.min(...starting.keys());
  const lastStart = Math.max(...starting.keys());
  for (let row = firstRow; row < rows; row++) {
    active = active.filter((edge) => edge.lastRow >= row);
    active.push(...(starting.get(row) ?? []));
    if (active.length === 0) {
      if (row > lastStart) break;
      continue;
    }
    const crossings = active.map((edge) => snap(edge.x0 + (row - edge.y0) * edge.slope, CROSSING_GRID)).sort((a, b) => a - b);
    const base = row * columns;
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      // Between crossings a and b the centres c with a <= c < b are inside.
      const from = Math.max(0, Math.ceil(crossings[k] ?? 0));
      const to = Math.min(columns, Math.ceil(crossings[k + 1] ?? 0));
      if (from < to) out.fill(1, base + from, base + to);
    }
  }
  return out;
}
