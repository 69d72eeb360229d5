import type { DataSet } from 'dicom-parser';
import { A, fail, inside, itemScope, items, numbers, requireText, type Attr, type Scope } from './attributes.js';
import { sameGrid } from './geometry.js';
import type { ImageGeometry, Vec3 } from './types.js';

/**
 * Which source image each Segmentation frame belongs to. In order: the frame's own Derivation Image Sequence, the
 * Shared Functional Groups' one, the only instance the Common Instance Reference module lists, and (when the
 * caller passes source geometries) the source image whose pixel grid the frame's Plane Position, Orientation and
 * Pixel Measures describe.
 */

/** How close a frame's first pixel must be to a source image's to count as the same plane (DS rounding). */
export const POSITION_TOLERANCE_MM = 0.01;

export interface FrameReferenceContext {
  readonly scope: Scope;
  readonly rows: number;
  readonly columns: number;
  readonly shared: DataSet | undefined;
  /** From the Common Instance Reference module, in file order. */
  readonly referencedInstances: readonly string[];
  readonly sourceGeometries: ReadonlyMap<string, ImageGeometry> | undefined;
}

/** A frame's source images, or why none could be named (the frame is then left out, not misplaced). */
export type FrameSources = { readonly uids: readonly string[] } | { readonly unresolved: string };

/** Every SOP Instance UID in Referenced Series Sequence, including those of other studies. */
export function referencedInstances(ds: DataSet, scope: Scope): string[] {
  const series = [...(items(ds, A.referencedSeriesSequence) ?? [])];
  for (const study of items(ds, A.otherStudiesSequence) ?? []) series.push(...(items(study, A.referencedSeriesSequence) ?? []));
  const uids: string[] = [];
  series.forEach((s, i) => {
    const seriesScope = itemScope(scope, A.referencedSeriesSequence, i);
    (items(s, A.referencedInstanceSequence) ?? []).forEach((instance, j) => {
      uids.push(requireText(instance, A.referencedSopInstanceUid, itemScope(seriesScope, A.referencedInstanceSequence, j)));
    });
  });
  return [...new Set(uids)];
}

/**
 * Only 2D source images are supported: a reference to frame 2 or later of a multi-frame source would otherwise be
 * merged with the other frames of that image under one UID.
 */
function checkFrameNumber(source: DataSet, uid: string, scope: Scope): void {
  const frames = numbers(source, A.referencedFrameNumber, scope);
  if (frames !== undefined && frames.some((n) => n !== 1)) {
    throw fail(scope, 'unsupported', `source image ${uid} is referenced by ${A.referencedFrameNumber.name} ${frames.join('\\')}; masks for frames of multi-frame images are not supported`);
  }
}

/** The UIDs a functional group item's Derivation Image Sequence names, or undefined when it names none. */
function derivedFrom(group: DataSet | undefined, scope: Scope): string[] | undefined {
  if (group === undefined) return undefined;
  const uids: string[] = [];
  (items(group, A.derivationImageSequence) ?? []).forEach((derivation, i) => {
    const derivationScope = itemScope(scope, A.derivationImageSequence, i);
    (items(derivation, A.sourceImageSequence) ?? []).forEach((source, j) => {
      const sourceScope = itemScope(derivationScope, A.sourceImageSequence, j);
      const uid = requireText(source, A.referencedSopInstanceUid, sourceScope);
      checkFrameNumber(source, uid, sourceScope);
      uids.push(uid);
    });
  });
  return uids.length === 0 ? undefined : [...new Set(uids)];
}

/** The first item of a functional group macro in the frame's item, else in the shared item. */
function groupMacro(frame: DataSet, shared: DataSet | undefined, sequence: Attr): DataSet | undefined {
  return items(frame, sequence)?.[0] ?? (shared === undefined ? undefined : items(shared, sequence)?.[0]);
}

function frameGeometry(frame: DataSet, ctx: FrameReferenceContext, scope: Scope): ImageGeometry | undefined {
  const position = groupMacro(frame, ctx.shared, A.planePositionSequence);
  const orientation = groupMacro(frame, ctx.shared, A.planeOrientationSequence);
  const measures = groupMacro(frame, ctx.shared, A.pixelMeasuresSequence);
  const ipp = position === undefined ? undefined : numbers(position, A.imagePositionPatient, scope);
  const iop = orientation === undefined ? undefined : numbers(orientation, A.imageOrientationPatient, scope);
  const spacing = measures === undefined ? undefined : numbers(measures, A.pixelSpacing, scope);
  if (ipp?.length !== 3 || iop?.length !== 6 || spacing?.length !== 2) return undefined;
  const v = (values: number[], i: number): number => values[i] ?? Number.NaN;
  const vec = (values: number[], from: number): Vec3 => [v(values, from), v(values, from + 1), v(values, from + 2)];
  return {
    rows: ctx.rows,
    columns: ctx.columns,
    imagePositionPatient: vec(ipp, 0),
    imageOrientationPatient: [...vec(iop, 0), ...vec(iop, 3)],
    pixelSpacing: [v(spacing, 0), v(spacing, 1)],
  };
}

function byGeometry(frame: DataSet, index: number, ctx: FrameReferenceContext, scope: Scope): FrameSources {
  const geometries = ctx.sourceGeometries;
  const geometry = frameGeometry(frame, ctx, scope);
  const frameName = `frame ${index + 1}`;
  if (geometries === undefined || geometry === undefined) {
    const listed = ctx.referencedInstances.length === 0 ? 'lists no image' : `lists ${ctx.referencedInstances.length} images, not exactly one`;
    const why =
      geometry === undefined
        ? `it has no complete ${A.planePositionSequence.name} / ${A.planeOrientationSequence.name} / ${A.pixelMeasuresSequence.name} to match it by position`
        : 'no source image geometries were given to match it by position';
    throw fail(
      scope,
      'invalid',
      `${frameName} names no source image: no ${A.derivationImageSequence.name} in its Per-frame or the Shared Functional Groups, ${A.referencedSeriesSequence.name} ${listed}, and ${why}`,
    );
  }
  const candidates = [...geometries].filter(([, g]) => sameGrid(g, geometry, POSITION_TOLERANCE_MM));
  if (candidates.length > 1) {
    throw fail(scope, 'mismatch', `${frameName} lies on the pixel grid of ${candidates.length} source images (${candidates.map(([uid]) => uid).join(', ')}), so its image is ambiguous`);
  }
  const [match] = candidates;
  if (match === undefined) return { unresolved: `${frameName}: no given source image lies at Image Position (Patient) ${geometry.imagePositionPatient.join('\\')}` };
  return { uids: [match[0]] };
}

export function frameSources(frame: DataSet, index: number, ctx: FrameReferenceContext): FrameSources {
  const scope = inside(ctx.scope, `${A.perFrameFunctionalGroups.name} item ${index + 1}`);
  const own = derivedFrom(frame, scope);
  if (own !== undefined) return { uids: own };
  const shared = derivedFrom(ctx.shared, inside(ctx.scope, A.sharedFunctionalGroups.name));
  if (shared !== undefined) return { uids: shared };
  const [only, ...others] = ctx.referencedInstances;
  if (only !== undefined && others.length === 0) return { uids: [only] };
  return byGeometry(frame, index, ctx, scope);
}
