import type { DataSet } from 'dicom-parser';
import { defaultCodecs, type CodecRegistry } from '../dicom/codecs.js';
import { MAX_INFLATED_BYTES, parseStructure, type ParsedStructure } from '../dicom/parse.js';
import { A, fail, itemScope, items, numbers, positiveInteger, requireItems, requireText, text, type Scope } from './attributes.js';
import { checkGeometry, patientToPixel } from './geometry.js';
import { fillEvenOdd, type Polygon } from './rasterise.js';
import type { ImageGeometry, LabelMask, MaskFile, MaskSegment, Vec3 } from './types.js';

/**
 * RT Structure Set (PS3.3 A.19, C.8.8.5 / C.8.8.6) to label masks: each ROI's closed planar contours are
 * rasterised onto the grid of the image they lie on (see fillEvenOdd for the rule: even-odd at pixel centres,
 * so inner contours cut holes). The caller supplies the images' geometry, read from their headers.
 */

export const RT_STRUCTURE_SET_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.481.3';

/** Default distance a contour point may lie off its image's plane; DS rounding stays far below this. */
export const DEFAULT_PLANE_TOLERANCE_MM = 0.5;

export interface ReadRtStructOptions {
  readonly file?: string;
  readonly codecs?: CodecRegistry;
  readonly maxInflatedBytes?: number;
  /** Geometry of the images contours may lie on, by SOP Instance UID; contours on other images are left out. */
  readonly geometries?: ReadonlyMap<string, ImageGeometry>;
  /**
   * ROI Name (compared trimmed, case-insensitively) to label; ROIs not named are left out, and several ROIs may
   * share a label. Without it every ROI keeps its ROI Number (3006,0022) as its label.
   */
  readonly roiLabels?: ReadonlyMap<string, number>;
  readonly planeToleranceMm?: number;
}

interface Roi {
  readonly number: number;
  readonly name: string;
  readonly label: number | undefined;
  readonly frameOfReferenceUid: string | undefined;
}

const CLOSED_TYPES: ReadonlySet<string> = new Set(['CLOSED_PLANAR', 'CLOSEDPLANAR_XOR']);
const MAX_LABEL = 255;

function readRois(ds: DataSet, roiLabels: ReadonlyMap<string, number> | undefined, scope: Scope): Map<number, Roi> {
  const byName = roiLabels === undefined ? undefined : new Map([...roiLabels].map(([name, label]) => [name.trim().toLowerCase(), label]));
  const rois = new Map<number, Roi>();
  requireItems(ds, A.structureSetRoiSequence, scope).forEach((item, i) => {
    const at = itemScope(scope, A.structureSetRoiSequence, i);
    const number = positiveInteger(item, A.roiNumber, at);
    if (number === undefined) throw fail(at, 'invalid', `${A.roiNumber.name} is missing`);
    if (rois.has(number)) throw fail(at, 'invalid', `${A.roiNumber.name} ${number} is used by more than one ROI`);
    const name = text(item, A.roiName) ?? `ROI ${number}`;
    const label = byName === undefined ? number : byName.get(name.toLowerCase());
    if (label !== undefined && (!Number.isInteger(label) || label < 1 || label > MAX_LABEL)) {
      const hint = byName === undefined ? '; pass ROI labels to map ROI names to labels' : '';
      throw fail(at, 'unsupported', `ROI "${name}" would get label ${label}, outside 1..${MAX_LABEL}${hint}`);
    }
    rois.set(number, { number, name, label, frameOfReferenceUid: text(item, A.referencedFrameOfReferenceUid) });
  });
  return rois;
}

/** The images a contour names in its Contour Image Sequence (2D images only; see seg-references). */
function contourImages(contour: DataSet, scope: Scope): string[] {
  return (items(contour, A.contourImageSequence) ?? []).map((image, i) => {
    const at = itemScope(scope, A.contourImageSequence, i);
    const uid = requireText(image, A.referencedSopInstanceUid, at);
    const frames = numbers(image, A.referencedFrameNumber, at);
    if (frames !== undefined && frames.some((n) => n !== 1)) {
      throw fail(at, 'unsupported', `image ${uid} is referenced by frame number ${frames.join('\\')}; contours on frames of multi-frame images are not supported`);
    }
    return uid;
  });
}

/** Every image the structure set lists under Referenced Frame of Reference Sequence (the series it was drawn on). */
function listedImages(ds: DataSet, scope: Scope): string[] {
  const uids: string[] = [];
  for (const frame of items(ds, A.referencedFrameOfReferenceSequence) ?? []) {
    for (const study of items(frame, A.rtReferencedStudySequence) ?? []) {
      for (const series of items(study, A.rtReferencedSeriesSequence) ?? []) uids.push(...contourImages(series, scope));
    }
  }
  return uids;
}

function contourPoints(contour: DataSet, scope: Scope): Vec3[] {
  const data = numbers(contour, A.contourData, scope);
  if (data === undefined || data.length === 0) throw fail(scope, 'invalid', `${A.contourData.name} is missing`);
  if (data.length % 3 !== 0) throw fail(scope, 'invalid', `${A.contourData.name} holds ${data.length} values, not (x, y, z) triplets`);
  const declared = positiveInteger(contour, A.numberOfContourPoints, scope);
  if (declared !== undefined && declared !== data.length / 3) {
    throw fail(scope, 'invalid', `${A.numberOfContourPoints.name} is ${declared} but ${A.contourData.name} holds ${data.length / 3} points`);
  }
  const points: Vec3[] = [];
  for (let i = 0; i < data.length; i += 3) points.push([data[i] ?? 0, data[i + 1] ?? 0, data[i + 2] ?? 0]);
  return points;
}

/** Images whose plane holds every point, for contours that name no image. */
function imagesOnPlane(points: readonly Vec3[], roi: Roi, geometries: ReadonlyMap<string, ImageGeometry>, tolerance: number): string[] {
  return [...geometries]
    .filter(([, g]) => roi.frameOfReferenceUid === undefined || g.frameOfReferenceUid === undefined || g.frameOfReferenceUid === roi.frameOfReferenceUid)
    .filter(([, g]) => {
      const toPixel = patientToPixel(g);
      return points.every((p) => Math.abs(toPixel(p).offPlane) <= tolerance);
    })
    .map(([uid]) => uid);
}

function toPolygon(points: readonly Vec3[], uid: string, geometry: ImageGeometry, roi: Roi, tolerance: number, scope: Scope): Polygon {
  if (roi.frameOfReferenceUid !== undefined && geometry.frameOfReferenceUid !== undefined && roi.frameOfReferenceUid !== geometry.frameOfReferenceUid) {
    throw fail(scope, 'mismatch', `ROI "${roi.name}" is in Frame of Reference ${roi.frameOfReferenceUid} but image ${uid} is in ${geometry.frameOfReferenceUid}`);
  }
  const toPixel = patientToPixel(geometry);
  return points.map((p) => {
    const { column, row, offPlane } = toPixel(p);
    if (Math.abs(offPlane) > tolerance) {
      throw fail(scope, 'mismatch', `contour point ${p.join('\\')} lies ${Math.abs(offPlane).toFixed(3)} mm off the plane of image ${uid} (tolerance ${tolerance} mm); the image geometry does not fit the contour`);
    }
    return [column, row] as const;
  });
}

/** Reads a Structure Set that was already parsed (readMaskFile sniffs with the same parse). */
export function decodeRtStructDataset(parsed: ParsedStructure, options: ReadRtStructOptions = {}): MaskFile {
  const file = options.file ?? '<memory>';
  const scope: Scope = { file };
  const ds = parsed.dataSet;
  const sopClass = text(ds, A.sopClassUid);
  if (sopClass !== RT_STRUCTURE_SET_SOP_CLASS_UID) {
    throw fail(scope, 'not-a-mask', `${A.sopClassUid.name} is ${sopClass ?? 'missing'}, not RT Structure Set Storage (${RT_STRUCTURE_SET_SOP_CLASS_UID})`);
  }
  const geometries = options.geometries ?? new Map<string, ImageGeometry>();
  for (const [uid, g] of geometries) checkGeometry(g, { file, path: `geometry of image ${uid}` });
  const tolerance = options.planeToleranceMm ?? DEFAULT_PLANE_TOLERANCE_MM;
  const rois = readRois(ds, options.roiLabels, scope);
  const unresolved: string[] = [];
  // Polygons per image, then per label.
  const polygons = new Map<string, Map<number, Polygon[]>>();
  const covered = new Set<string>();

  requireItems(ds, A.roiContourSequence, scope).forEach((roiItem, i) => {
    const roiScope = itemScope(scope, A.roiContourSequence, i);
    const number = positiveInteger(roiItem, A.referencedRoiNumber, roiScope);
    const roi = number === undefined ? undefined : rois.get(number);
    if (roi === undefined) throw fail(roiScope, 'invalid', `${A.referencedRoiNumber.name} ${number ?? '(missing)'} is no ROI of ${A.structureSetRoiSequence.name}`);
    const label = roi.label;
    (items(roiItem, A.contourSequence) ?? []).forEach((contour, j) => {
      const at = itemScope(roiScope, A.contourSequence, j);
      const where = `ROI "${roi.name}" contour ${j + 1}`;
      const type = requireText(contour, A.contourGeometricType, at).toUpperCase();
      const images = contourImages(contour, at);
      images.forEach((uid) => covered.add(uid));
      if (label === undefined) return;
      if (!CLOSED_TYPES.has(type)) {
        unresolved.push(`${where}: ${type} contours enclose no area; left out`);
        return;
      }
      const points = contourPoints(contour, at);
      if (points.length < 3) {
        unresolved.push(`${where}: ${points.length} point(s) enclose no area; left out`);
        return;
      }
      const targets = images.length > 0 ? images : imagesOnPlane(points, roi, geometries, tolerance);
      if (targets.length === 0) unresolved.push(`${where}: names no image and lies on the plane of none of the given images`);
      for (const uid of targets) {
        const geometry = geometries.get(uid);
        if (geometry === undefined) {
          unresolved.push(`${where}: image ${uid} was not given, so the contour cannot be placed`);
          continue;
        }
        covered.add(uid);
        const perLabel = polygons.get(uid) ?? new Map<number, Polygon[]>();
        polygons.set(uid, perLabel);
        perLabel.set(label, [...(perLabel.get(label) ?? []), toPolygon(points, uid, geometry, roi, tolerance, at)]);
      }
    });
  });
  for (const uid of listedImages(ds, scope)) covered.add(uid);

  const masks = new Map<string, LabelMask>();
  for (const uid of covered) {
    const geometry = geometries.get(uid);
    if (geometry === undefined) continue;
    const labels = new Uint8Array(geometry.rows * geometry.columns);
    // Ascending labels, each painted over the last: where ROIs overlap the higher label wins.
    const perLabel = [...(polygons.get(uid) ?? new Map<number, Polygon[]>())].sort(([a], [b]) => a - b);
    for (const [label, shapes] of perLabel) {
      const inside = fillEvenOdd(shapes, geometry.rows, geometry.columns);
      for (let p = 0; p < inside.length; p++) if (inside[p] === 1) labels[p] = label;
    }
    masks.set(uid, { rows: geometry.rows, columns: geometry.columns, labels });
  }
  return { kind: 'rtstruct', file, segments: segmentsOf(rois), masks, unresolved };
}

/** One segment per label in use; ROIs that share a label are listed together. */
function segmentsOf(rois: ReadonlyMap<number, Roi>): MaskSegment[] {
  const byLabel = new Map<number, Roi[]>();
  for (const roi of rois.values()) if (roi.label !== undefined) byLabel.set(roi.label, [...(byLabel.get(roi.label) ?? []), roi]);
  return [...byLabel]
    .sort(([a], [b]) => a - b)
    .map(([number, members]) => ({ number, label: members.map((r) => r.name).join(' | '), roiNumbers: members.map((r) => r.number) }));
}

/** Parses and reads an RT Structure Set held in memory. */
export function readRtStruct(bytes: Uint8Array, options: ReadRtStructOptions = {}): MaskFile {
  const file = options.file ?? '<memory>';
  const parsed = parseStructure(bytes, { file, codecs: options.codecs ?? defaultCodecs, maxInflatedBytes: options.maxInflatedBytes ?? MAX_INFLATED_BYTES });
  return decodeRtStructDataset(parsed, { ...options, file });
}
