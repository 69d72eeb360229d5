import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ds, is, part10, seq, text, type El } from './dicom-build.testkit.js';
import { MaskError } from './errors.js';
import { readImageGeometry } from './geometry.js';
import { readRtStruct, RT_STRUCTURE_SET_SOP_CLASS_UID, type ReadRtStructOptions } from './rtstruct.js';
import type { ImageGeometry, LabelMask, Vec3 } from './types.js';

const IMAGE = '2.25.501';
const OTHER = '2.25.502';
const FRAME_OF_REFERENCE = '2.25.900';
const ROWS = 12;
const COLUMNS = 16;

type Point = readonly [number, number];
interface ContourSpec {
  readonly points: readonly Point[];
  readonly type?: string;
  readonly images?: readonly string[] | null;
  readonly pointCount?: number;
  /** Added to every point along the image normal, mm. */
  readonly lift?: number;
}
interface RoiSpec {
  readonly number: number;
  readonly name: string;
  readonly contours: readonly ContourSpec[];
  readonly frameOfReference?: string;
}

const square: RoiSpec = {
  number: 1,
  name: 'Square',
  contours: [
    { points: [[1, 1], [7, 1], [7, 7], [1, 7]] },
    // The hole: a second contour inside the first, combined by even-odd.
    { points: [[3, 3], [5, 3], [5, 5], [3, 5]] },
  ],
};
const triangle: RoiSpec = {
  number: 2,
  name: 'Triangle',
  contours: [
    { points: [[9, 0], [15, 0], [9, 6]] },
    { points: [[10, 1], [12, 1], [10, 3]] },
    { points: [[0, 11], [15, 11]], type: 'OPEN_PLANAR' },
  ],
};
const rectangle: RoiSpec = { number: 3, name: 'Rectangle', contours: [{ points: [[6, 6], [10, 6], [10, 9], [6, 9]] }] };

/** The fill worked out by hand from the rule: centres on left/top edges in, on right/bottom edges out. */
const EXPECTED = [
  '.........222222.',
  '.111111..2..22..',
  '.111111..2.22...',
  '.11..11..222....',
  '.11..11..22.....',
  '.111111..2......',
  '.111113333......', // the rectangle (3) wins where it overlaps the square (1)
  '......3333......',
  '......3333......',
  '................',
  '................',
  '................',
];

const axial: ImageGeometry = {
  rows: ROWS,
  columns: COLUMNS,
  imagePositionPatient: [-100, 50, 20],
  imageOrientationPatient: [1, 0, 0, 0, 1, 0],
  pixelSpacing: [0.8, 0.6],
  frameOfReferenceUid: FRAME_OF_REFERENCE,
};
const cos30 = Math.cos(Math.PI / 6);
const oblique: ImageGeometry = {
  rows: ROWS,
  columns: COLUMNS,
  imagePositionPatient: [12.5, -3, 40],
  imageOrientationPatient: [cos30, 0.5, 0, 0, 0, -1],
  pixelSpacing: [1.25, 0.5],
  frameOfReferenceUid: FRAME_OF_REFERENCE,
};

/** Patient coordinates (mm) of a point given in pixel units, by PS3.3 C.7.6.2.1.1. */
function toPatient(g: ImageGeometry, [column, row]: Point, lift = 0): Vec3 {
  const [x0, x1, x2, y0, y1, y2] = g.imageOrientationPatient;
  const [rowSpacing, columnSpacing] = g.pixelSpacing;
  const normal = [x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0];
  const s = g.imagePositionPatient;
  return [0, 1, 2].map((i) => (s[i] ?? 0) + column * columnSpacing * [x0, x1, x2][i]! + row * rowSpacing * [y0, y1, y2][i]! + lift * normal[i]!) as unknown as Vec3;
}

function contourItem(g: ImageGeometry, c: ContourSpec): El[] {
  const data = c.points.flatMap((p) => toPatient(g, p, c.lift));
  const item: El[] = [text(0x30060042, 'CS', c.type ?? 'CLOSED_PLANAR'), is(0x30060046, c.pointCount ?? c.points.length), ds(0x30060050, ...data)];
  const images = c.images === undefined ? [IMAGE] : c.images;
  if (images !== null) item.push(seq(0x30060016, ...images.map((uid) => [text(0x00081150, 'UI', '1.2.840.10008.5.1.4.1.1.2'), text(0x00081155, 'UI', uid)])));
  return item;
}

function buildRtStruct(g: ImageGeometry, rois: readonly RoiSpec[], listed: readonly string[] = [IMAGE], extra: { roiContours?: El[][] } = {}): Uint8Array {
  return part10(
    [
      text(0x00080060, 'CS', 'RTSTRUCT'),
      text(0x30060002, 'SH', 'TEST'),
      seq(0x30060010, [
        text(0x00200052, 'UI', FRAME_OF_REFERENCE),
        seq(0x30060012, [
          text(0x00081155, 'UI', '2.25.1'),
          seq(0x30060014, [
            text(0x0020000e, 'UI', '2.25.2'),
            seq(0x30060016, ...listed.map((uid) => [text(0x00081150, 'UI', '1.2.840.10008.5.1.4.1.1.2'), text(0x00081155, 'UI', uid)])),
          ]),
        ]),
      ]),
      seq(0x30060020, ...rois.map((r) => [is(0x30060022, r.number), text(0x30060024, 'UI', r.frameOfReference ?? FRAME_OF_REFERENCE), text(0x30060026, 'LO', r.name)])),
      seq(0x30060039, ...(extra.roiContours ?? rois.map((r) => [is(0x30060084, r.number), seq(0x30060040, ...r.contours.map((c) => contourItem(g, c)))]))),
    ],
    RT_STRUCTURE_SET_SOP_CLASS_UID,
    '2.25.600',
  );
}

const art = (mask: LabelMask | undefined): string[] =>
  Array.from({ length: mask?.rows ?? 0 }, (_, r) => [...(mask?.labels.subarray(r * (mask.columns ?? 0), (r + 1) * (mask.columns ?? 0)) ?? [])].map((v) => (v === 0 ? '.' : String(v))).join(''));

function read(bytes: Uint8Array, options: ReadRtStructOptions): ReturnType<typeof readRtStruct> {
  return readRtStruct(bytes, { file: 'rs.dcm', ...options });
}

function errorOf(run: () => unknown): MaskError {
  try {
    run();
  } catch (error) {
    if (error instanceof MaskError) return error;
    throw error;
  }
  throw new Error('expected a MaskError');
}

describe('readRtStruct', () => {
  for (const [name, g] of [
    ['axial', axial],
    ['oblique', oblique],
  ] as const) {
    it(`rasterises a square and a triangle with holes and an overlapping rectangle, pixel for pixel (${name})`, () => {
      const result = read(buildRtStruct(g, [square, triangle, rectangle]), { geometries: new Map([[IMAGE, g]]) });
      expect(result.kind).toBe('rtstruct');
      expect(art(result.masks.get(IMAGE))).toEqual(EXPECTED);
      expect(result.segments).toEqual([
        { number: 1, label: 'Square', roiNumbers: [1] },
        { number: 2, label: 'Triangle', roiNumbers: [2] },
        { number: 3, label: 'Rectangle', roiNumbers: [3] },
      ]);
      expect(result.unresolved).toEqual(['ROI "Triangle" contour 3: OPEN_PLANAR contours enclose no area; left out']);
    });
  }

  it('maps ROI names to labels, merging ROIs and leaving unnamed ones out', () => {
    const result = read(buildRtStruct(axial, [square, triangle, rectangle]), { geometries: new Map([[IMAGE, axial]]), roiLabels: new Map([['square', 5], [' TRIANGLE ', 5]]) });
    expect(result.segments).toEqual([{ number: 5, label: 'Square | Triangle', roiNumbers: [1, 2] }]);
    expect(art(result.masks.get(IMAGE))).toEqual(EXPECTED.map((row) => row.replace(/3/g, '.').replace(/[12]/g, '5')).map((row, r) => (r === 6 ? '.555555.........' : row)));
  });

  it('places contours that name no image on the image whose plane holds them, and reports the rest', () => {
    const rois: RoiSpec[] = [
      { number: 1, name: 'Square', contours: [{ points: [[1, 1], [7, 1], [7, 7], [1, 7]], images: null }] },
      { number: 2, name: 'Elsewhere', contours: [{ points: [[1, 1], [3, 1], [3, 3]], images: null, lift: 30 }, { points: [[1, 1], [3, 1], [3, 3]], images: ['2.25.999'] }] },
    ];
    const shifted: ImageGeometry = { ...axial, imagePositionPatient: [-100, 50, 25] };
    const result = read(buildRtStruct(axial, rois, [IMAGE, OTHER]), { geometries: new Map([[IMAGE, axial], [OTHER, shifted]]) });
    expect(result.masks.get(IMAGE)?.labels.filter((v) => v === 1).length).toBe(36);
    // OTHER is listed by the structure set but holds no contour: all background.
    expect(result.masks.get(OTHER)?.labels.every((v) => v === 0)).toBe(true);
    expect(result.unresolved).toEqual([
      'ROI "Elsewhere" contour 1: names no image and lies on the plane of none of the given images',
      'ROI "Elsewhere" contour 2: image 2.25.999 was not given, so the contour cannot be placed',
    ]);
  });

  const refusals: { name: string; bytes: () => Uint8Array; options?: ReadRtStructOptions; reason: string; message: string }[] = [
    {
      name: 'a contour off its image plane',
      bytes: () => buildRtStruct(axial, [{ ...square, contours: [{ points: [[1, 1], [7, 1], [7, 7]], lift: 2 }] }]),
      reason: 'mismatch',
      message: 'lies 2.000 mm off the plane of image 2.25.501 (tolerance 0.5 mm); the image geometry does not fit the contour',
    },
    {
      name: 'another frame of reference',
      bytes: () => buildRtStruct(axial, [{ ...square, frameOfReference: '2.25.901' }]),
      reason: 'mismatch',
      message: 'ROI "Square" is in Frame of Reference 2.25.901 but image 2.25.501 is in 2.25.900',
    },
    {
      name: 'a wrong Number of Contour Points',
      bytes: () => buildRtStruct(axial, [{ ...square, contours: [{ points: [[1, 1], [7, 1], [7, 7]], pointCount: 4 }] }]),
      reason: 'invalid',
      message: 'rs.dcm: ROI Contour Sequence (3006,0039) item 1 > Contour Sequence (3006,0040) item 1: Number of Contour Points (3006,0046) is 4 but Contour Data (3006,0050) holds 3 points',
    },
    {
      name: 'an unknown Referenced ROI Number',
      bytes: () => buildRtStruct(axial, [square], [IMAGE], { roiContours: [[is(0x30060084, 7)]] }),
      reason: 'invalid',
      message: 'rs.dcm: ROI Contour Sequence (3006,0039) item 1: Referenced ROI Number (3006,0084) 7 is no ROI of Structure Set ROI Sequence (3006,0020)',
    },
    {
      name: 'an ROI Number beyond 8 bits without a name map',
      bytes: () => buildRtStruct(axial, [{ ...square, number: 300 }]),
      reason: 'unsupported',
      message: 'ROI "Square" would get label 300, outside 1..255; pass ROI labels to map ROI names to labels',
    },
    {
      name: 'a skewed image orientation',
      bytes: () => buildRtStruct(axial, [square]),
      options: { geometries: new Map([[IMAGE, { ...axial, imageOrientationPatient: [1, 0, 0, 0.5, 1, 0] }]]) },
      reason: 'invalid',
      message: 'is not two perpendicular unit vectors',
    },
  ];
  for (const c of refusals) {
    it(`refuses ${c.name}`, () => {
      const error = errorOf(() => read(c.bytes(), c.options ?? { geometries: new Map([[IMAGE, axial]]) }));
      expect(error.reason).toBe(c.reason);
      expect(error.message).toContain(c.message);
    });
  }

  it('refuses another SOP class', () => {
    const bytes = part10([text(0x00080060, 'CS', 'CT')], '1.2.840.10008.5.1.4.1.1.2', '2.25.3');
    expect(errorOf(() => read(bytes, {})).message).toBe('rs.dcm: SOP Class UID (0008,0016) is 1.2.840.10008.5.1.4.1.1.2, not RT Structure Set Storage (1.2.840.10008.5.1.4.1.1.481.3)');
  });
});

const TESTDATA = join(import.meta.dirname, '../../../../../shared/testdata/dicom');

describe.skipIf(!existsSync(join(TESTDATA, 'CT_small.dcm')))('readImageGeometry on real files', () => {
  it('reads position, orientation and spacing of a CT slice', () => {
    const { sopInstanceUid, geometry } = readImageGeometry(readFileSync(join(TESTDATA, 'CT_small.dcm')), { file: 'CT_small.dcm' });
    expect(sopInstanceUid).toBe('1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322');
    expect(geometry).toMatchObject({ rows: 128, columns: 128, imageOrientationPatient: [1, 0, 0, 0, 1, 0], pixelSpacing: [0.661468, 0.661468] });
    expect(geometry.imagePositionPatient).toEqual([-158.135803, -179.035797, -75.699997]);
  });

  it('refuses an image that has no plane geometry', () => {
    const error = errorOf(() => readImageGeometry(readFileSync(join(TESTDATA, 'SC_rgb.dcm')), { file: 'SC_rgb.dcm' }));
    expect(error.message).toBe('SC_rgb.dcm: Image Position (Patient) (0020,0032) is missing, so contours cannot be placed on the image');
  });
});
