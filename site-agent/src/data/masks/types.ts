/** A label mask on one image's pixel grid: 0 is background, any other value a segment number. */
export interface LabelMask {
  readonly rows: number;
  readonly columns: number;
  /** rows * columns labels, row-major. */
  readonly labels: Uint8Array;
}

export type SegmentAlgorithmType = 'AUTOMATIC' | 'SEMIAUTOMATIC' | 'MANUAL';

/** What a label value in the masks stands for. */
export interface MaskSegment {
  /** The value the masks hold for this segment (1..255). */
  readonly number: number;
  readonly label: string;
  /** Segment Algorithm Type (0062,0008), for DICOM SEG only. */
  readonly algorithmType?: SegmentAlgorithmType | undefined;
  /** ROI Numbers (3006,0022) painted with this label, for RT Structure Sets only. */
  readonly roiNumbers?: readonly number[] | undefined;
}

export type MaskKind = 'dicom-seg' | 'rtstruct' | 'png';

/** The masks one file holds, keyed by source image SOP Instance UID (or, for PNG, the caller's image key). */
export interface MaskFile {
  readonly kind: MaskKind;
  readonly file: string;
  readonly segments: readonly MaskSegment[];
  readonly masks: ReadonlyMap<string, LabelMask>;
  /**
   * What could not be tied to an image and was left out: SEG frames or RT contours whose source image is
   * unknown to the caller, contours without area. Empty when everything was used.
   */
  readonly unresolved: readonly string[];
}

export type Vec3 = readonly [number, number, number];

/**
 * Where an image's pixels lie in the patient coordinate system (PS3.3 C.7.6.2.1.1): the centre of the first
 * pixel, the row and column direction cosines, and the spacing between rows and between columns in mm.
 */
export interface ImageGeometry {
  readonly rows: number;
  readonly columns: number;
  /** Image Position (Patient) (0020,0032): centre of the top left pixel, mm. */
  readonly imagePositionPatient: Vec3;
  /** Image Orientation (Patient) (0020,0037): direction of increasing column, then of increasing row. */
  readonly imageOrientationPatient: readonly [number, number, number, number, number, number];
  /** Pixel Spacing (0028,0030) as stored: [between rows (vertical), between columns (horizontal)], mm. */
  readonly pixelSpacing: readonly [number, number];
  readonly frameOfReferenceUid?: string | undefined;
}
