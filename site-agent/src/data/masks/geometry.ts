import type { DataSet } from 'dicom-parser';
import { defaultCodecs, type CodecRegistry } from '../dicom/codecs.js';
import { MAX_INFLATED_BYTES, parseStructure } from '../dicom/parse.js';
import { A, fail, inside, items, requireNumbers, requireUint16, text, type Scope } from './attributes.js';
import type { ImageGeometry, Vec3 } from './types.js';

/** How far direction cosines may be from unit length and from perpendicular (DS rounding leaves ~1e-6). */
const COSINE_TOLERANCE = 1e-3;

const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const minus = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const unit = (a: Vec3): Vec3 => {
  const n = Math.sqrt(dot(a, a));
  return [a[0] / n, a[1] / n, a[2] / n];
};

/** Refuses a geometry that cannot place pixels: non-finite values, skewed or non-unit axes, zero spacing. */
export function checkGeometry(g: ImageGeometry, scope: Scope): void {
  if (!Number.isInteger(g.rows) || !Number.isInteger(g.columns) || g.rows < 1 || g.columns < 1) {
    throw fail(scope, 'invalid', `image size ${g.rows} x ${g.columns} is not a positive integer size`);
  }
  const all = [...g.imagePositionPatient, ...g.imageOrientationPatient, ...g.pixelSpacing];
  if (!all.every(Number.isFinite)) throw fail(scope, 'invalid', 'image geometry holds a non-finite number');
  const [rowSpacing, columnSpacing] = g.pixelSpacing;
  if (!(rowSpacing > 0 && columnSpacing > 0)) throw fail(scope, 'invalid', `${A.pixelSpacing.name} must be positive, got ${rowSpacing}\\${columnSpacing}`);
  const [x, y] = axes(g);
  const lengths = [Math.sqrt(dot(x, x)), Math.sqrt(dot(y, y))];
  if (lengths.some((l) => Math.abs(l - 1) > COSINE_TOLERANCE) || Math.abs(dot(unit(x), unit(y))) > COSINE_TOLERANCE) {
    throw fail(scope, 'invalid', `${A.imageOrientationPatient.name} ${g.imageOrientationPatient.join('\\')} is not two perpendicular unit vectors`);
  }
}

function axes(g: ImageGeometry): [Vec3, Vec3] {
  const o = g.imageOrientationPatient;
  return [
    [o[0], o[1], o[2]],
    [o[3], o[4], o[5]],
  ];
}

/** Maps patient coordinates (mm) onto an image: fractional column and row of the point, and its distance from the plane. */
export type PatientToPixel = (point: Vec3) => { column: number; row: number; offPlane: number };

/**
 * Inverse of PS3.3 C.7.6.2.1.1 (P = S + column * columnSpacing * X + row * rowSpacing * Y): pixel centres sit at
 * integer (column, row), the first pixel's centre at Image Position (Patient). Axes are re-normalised so DS rounding
 * does not scale the result.
 */
export function patientToPixel(g: ImageGeometry): PatientToPixel {
  const [rawX, rawY] = axes(g);
  const x = unit(rawX);
  const y = unit(rawY);
  const normal = unit(cross(x, y));
  const [rowSpacing, columnSpacing] = g.pixelSpacing;
  return (point) => {
    const d = minus(point, g.imagePositionPatient);
    return { column: dot(d, x) / columnSpacing, row: dot(d, y) / rowSpacing, offPlane: dot(d, normal) };
  };
}

/** True when two geometries describe the same pixel grid, within `toleranceMm` at the first pixel. */
export function sameGrid(a: ImageGeometry, b: ImageGeometry, toleranceMm: number): boolean {
  if (a.rows !== b.rows || a.columns !== b.columns) return false;
  const close = (p: readonly number[], q: readonly number[], tolerance: number): boolean => p.every((v, i) => Math.abs(v - (q[i] ?? Number.NaN)) <= tolerance);
  return (
    close(a.imagePositionPatient, b.imagePositionPatient, toleranceMm) &&
    close(a.imageOrientationPatient, b.imageOrientationPatient, COSINE_TOLERANCE) &&
    close(a.pixelSpacing, b.pixelSpacing, Math.min(...a.pixelSpacing) * COSINE_TOLERANCE)
  );
}

// requireNumbers already checked the counts; NaN only stands in for the type checker.
const vec3 = (v: readonly number[]): Vec3 => [v[0] ?? Number.NaN, v[1] ?? Number.NaN, v[2] ?? Number.NaN];
const pair = (v: readonly number[]): readonly [number, number] => [v[0] ?? Number.NaN, v[1] ?? Number.NaN];
const orientation = (v: readonly number[]): ImageGeometry['imageOrientationPatient'] => [...vec3(v), ...vec3(v.slice(3))];

/** The first item's first item of a functional group macro (e.g. Plane Position Sequence), from one group item. */
function macro(group: DataSet | undefined, sequence: typeof A.planePositionSequence): DataSet | undefined {
  return group === undefined ? undefined : items(group, sequence)?.[0];
}

/**
 * Reads an image's geometry: from the top-level attributes of a classic image, else (enhanced multi-frame) from
 * the Shared Functional Groups, else from the first Per-frame item. For multi-frame images this is frame 1.
 */
export function geometryFromDataSet(ds: DataSet, file: string): ImageGeometry {
  const scope: Scope = { file };
  const rows = requireUint16(ds, A.rows, scope);
  const columns = requireUint16(ds, A.columns, scope);
  const shared = items(ds, A.sharedFunctionalGroups)?.[0];
  const firstFrame = items(ds, A.perFrameFunctionalGroups)?.[0];
  const find = (a: typeof A.imagePositionPatient, sequence: typeof A.planePositionSequence): [DataSet, Scope] => {
    if (ds.elements[a.tag] !== undefined) return [ds, scope];
    for (const [group, name] of [
      [shared, A.sharedFunctionalGroups],
      [firstFrame, A.perFrameFunctionalGroups],
    ] as const) {
      const item = macro(group, sequence);
      if (item?.elements[a.tag] !== undefined) return [item, inside(scope, `${name.name} > ${sequence.name}`)];
    }
    throw fail(scope, 'invalid', `${a.name} is missing, so contours cannot be placed on the image`);
  };
  const [positionDs, positionScope] = find(A.imagePositionPatient, A.planePositionSequence);
  const [orientationDs, orientationScope] = find(A.imageOrientationPatient, A.planeOrientationSequence);
  const [spacingDs, spacingScope] = find(A.pixelSpacing, A.pixelMeasuresSequence);
  const geometry: ImageGeometry = {
    rows,
    columns,
    imagePositionPatient: vec3(requireNumbers(positionDs, A.imagePositionPatient, positionScope, 3)),
    imageOrientationPatient: orientation(requireNumbers(orientationDs, A.imageOrientationPatient, orientationScope, 6)),
    pixelSpacing: pair(requireNumbers(spacingDs, A.pixelSpacing, spacingScope, 2)),
    frameOfReferenceUid: text(ds, A.frameOfReferenceUid),
  };
  checkGeometry(geometry, scope);
  return geometry;
}

export interface ReadGeometryOptions {
  readonly file?: string;
  readonly codecs?: CodecRegistry;
  readonly maxInflatedBytes?: number;
}

/** Parses a DICOM image (header only is used) and returns its SOP Instance UID and geometry. */
export function readImageGeometry(bytes: Uint8Array, options: ReadGeometryOptions = {}): { sopInstanceUid: string; geometry: ImageGeometry } {
  const file = options.file ?? '<memory>';
  const { dataSet } = parseStructure(bytes, { file, codecs: options.codecs ?? defaultCodecs, maxInflatedBytes: options.maxInflatedBytes ?? MAX_INFLATED_BYTES });
  const sopInstanceUid = text(dataSet, A.sopInstanceUid);
  if (sopInstanceUid === undefined) throw fail({ file }, 'invalid', `${A.sopInstanceUid.name} is missing`);
  return { sopInstanceUid, geometry: geometryFromDataSet(dataSet, file) };
}
