import type { LesionPlacement } from './phantom.js';
import { syntheticUid } from './rng.js';
import { writeSegmentation, type SegImageGeometry } from './seg-writer.js';
import { SOP_CLASS_UIDS, type SyntheticImageSpec } from './writer.js';

/**
 * Ground-truth lesion masks for the synthetic consortium, written as one BINARY DICOM SEG per image so a
 * generated site is also a segmentation dataset.
 */

/** The SEG's single segment, and the name a segmentation study over the consortium uses. */
export const LESION_SEGMENT = 'lesion';

/** The image attributes a SEG needs to reference its source and share its patient and study. */
export type LesionSegSource = Pick<
  SyntheticImageSpec,
  'sopClass' | 'sopInstanceUid' | 'studyInstanceUid' | 'seriesInstanceUid' | 'patientName' | 'patientId' | 'studyDate' | 'studyId' | 'rows' | 'columns'
>;

/**
 * The lesion disc: pixels whose centre (integer x, y, as the phantom paints them) lies within the lesion radius
 * of its centre. The drawn blob has a soft rim beyond this; the disc is the lesion a reader would outline.
 */
export function lesionMask(rows: number, columns: number, lesion: LesionPlacement | undefined): Uint8Array {
  const mask = new Uint8Array(rows * columns);
  if (lesion === undefined) return mask;
  const r2 = lesion.radius * lesion.radius;
  const y0 = Math.max(0, Math.floor(lesion.y - lesion.radius));
  const y1 = Math.min(rows - 1, Math.ceil(lesion.y + lesion.radius));
  const x0 = Math.max(0, Math.floor(lesion.x - lesion.radius));
  const x1 = Math.min(columns - 1, Math.ceil(lesion.x + lesion.radius));
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) if ((x - lesion.x) ** 2 + (y - lesion.y) ** 2 <= r2) mask[y * columns + x] = 1;
  return mask;
}

/** The neutral plane the image writer gives CT and MR phantoms (origin, axial, 1 mm pixels). */
const PHANTOM_GEOMETRY: SegImageGeometry = { imagePositionPatient: [0, 0, 0], imageOrientationPatient: [1, 0, 0, 0, 1, 0], pixelSpacing: [1, 1], sliceThickness: 1 };

/**
 * A SEG for one image: the lesion disc, or for a normal image no lesion pixels. The writer then stores one empty
 * frame that still names the image, so the reader gives that image an all-background mask (not "no mask").
 */
export function writeLesionSegmentation(source: LesionSegSource, lesion: LesionPlacement | undefined): Uint8Array {
  // Secondary Capture has no patient geometry; CT and MR share the image writer's frame of reference.
  const placed = source.sopClass !== 'secondary-capture';
  return writeSegmentation({
    studyInstanceUid: source.studyInstanceUid,
    patientName: source.patientName,
    patientId: source.patientId,
    studyDate: source.studyDate,
    studyId: source.studyId,
    ...(placed ? { frameOfReferenceUid: syntheticUid(source.studyInstanceUid, 'frame-of-reference') } : {}),
    segments: [{ number: 1, label: LESION_SEGMENT }],
    images: [
      {
        sopClassUid: SOP_CLASS_UIDS[source.sopClass],
        sopInstanceUid: source.sopInstanceUid,
        seriesInstanceUid: source.seriesInstanceUid,
        rows: source.rows,
        columns: source.columns,
        labels: lesionMask(source.rows, source.columns, lesion),
        ...(placed ? { geometry: PHANTOM_GEOMETRY } : {}),
      },
    ],
  });
}
