import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { decodeAllFrames, decodeDicom } from '../data/dicom/reader.js';
import { readDicomSeg, readMaskFile } from '../data/masks/index.js';
import { syntheticUid } from './rng.js';
import { SEGMENTATION_STORAGE, writeSegmentation, type SegImageGeometry, type SegSourceImage, type SegSpec } from './seg-writer.js';

const ROWS = 7;
const COLUMNS = 13; // 91 pixels: frame k starts at bit 91k, inside a byte for every k not a multiple of 8
const CT = '1.2.840.10008.5.1.4.1.1.2';

const labels = (f: (x: number, y: number) => number): Uint8Array => Uint8Array.from({ length: ROWS * COLUMNS }, (_, i) => f(i % COLUMNS, Math.floor(i / COLUMNS)));
const geometry = (z: number): SegImageGeometry => ({ imagePositionPatient: [-40.5, 12, z], imageOrientationPatient: [1, 0, 0, 0, 1, 0], pixelSpacing: [0.5, 0.75], sliceThickness: 2 });

function image(n: number, mask: Uint8Array, withGeometry = true): SegSourceImage {
  return {
    sopClassUid: CT,
    sopInstanceUid: `2.25.70${n}`,
    seriesInstanceUid: n < 3 ? '2.25.61' : '2.25.62',
    rows: ROWS,
    columns: COLUMNS,
    labels: mask,
    ...(withGeometry ? { geometry: geometry(n * 2.5) } : {}),
  };
}

const masks = [
  labels((x, y) => ((x * 3 + y) % 4 === 0 ? 1 : x > 9 ? 2 : 0)),
  labels(() => 0),
  labels((x, y) => (y === 3 ? 3 : x === y ? 1 : 0)),
  labels((x, y) => (x + y > 14 ? 2 : 0)),
];

function spec(overrides: Partial<SegSpec> = {}): SegSpec {
  return {
    studyInstanceUid: '2.25.60',
    patientName: 'SIMULATED^SEG',
    patientId: 'SIM-SEG-1',
    studyDate: '20000101',
    studyId: 'SIM0001',
    frameOfReferenceUid: '2.25.63',
    images: masks.map((m, i) => image(i, m)),
    segments: [
      { number: 1, label: 'lesion' },
      { number: 2, label: 'vessel', algorithmType: 'MANUAL' },
      { number: 3, label: 'calcification', algorithmType: 'SEMIAUTOMATIC' },
    ],
    ...overrides,
  };
}

describe('writeSegmentation', () => {
  it('round-trips several images and segments through the mask reader', () => {
    const s = spec();
    const seg = readDicomSeg(writeSegmentation(s), { file: 'seg.dcm' });
    expect(seg.segmentationType).toBe('BINARY');
    expect(seg.segments).toEqual([
      { number: 1, label: 'lesion', algorithmType: 'AUTOMATIC' },
      { number: 2, label: 'vessel', algorithmType: 'MANUAL' },
      { number: 3, label: 'calcification', algorithmType: 'SEMIAUTOMATIC' },
    ]);
    expect(seg.masks.size).toBe(4);
    for (const source of s.images) expect(seg.masks.get(source.sopInstanceUid)).toEqual({ rows: ROWS, columns: COLUMNS, labels: source.labels });
    expect(seg.unresolved).toEqual([]);
  });

  it('writes one frame per segment and image that has pixels, bit-packed across byte and frame boundaries', () => {
    const bytes = writeSegmentation(spec());
    const image = decodeDicom(bytes, { file: 'seg.dcm' });
    // (1: images 0, 2) (2: images 0, 3) (3: image 2); image 1 is empty and has no frame.
    expect(image.header).toMatchObject({ numberOfFrames: 5, bitsAllocated: 1, rows: ROWS, columns: COLUMNS });
    const expected = [
      [1, 0],
      [1, 2],
      [2, 0],
      [2, 3],
      [3, 2],
    ].map(([segment, i]) => [...(masks[i ?? 0] ?? [])].map((v) => (v === segment ? 1 : 0)));
    expect(decodeAllFrames(image).map((f) => [...f])).toEqual(expected);
    const ds = dicomParser.parseDicom(bytes);
    // 5 x 91 bits = 57 bytes, padded to 58.
    expect(ds.elements['x7fe00010']?.length).toBe(58);
    const frames = ds.elements['x52009230']?.items ?? [];
    const sourceOf = (k: number): string | undefined => frames[k]?.dataSet?.elements['x00089124']?.items?.[0]?.dataSet?.elements['x00082112']?.items?.[0]?.dataSet?.string('x00081155');
    expect(frames.map((_, k) => sourceOf(k))).toEqual(['2.25.700', '2.25.702', '2.25.700', '2.25.703', '2.25.702']);
    const position = frames[3]?.dataSet?.elements['x00209113']?.items?.[0]?.dataSet?.string('x00200032');
    expect(position).toBe('-40.5\\12\\7.5');
  });

  it('writes the attributes the Segmentation IOD requires', () => {
    const ds = dicomParser.parseDicom(writeSegmentation(spec()));
    expect(ds.string('x00020002')).toBe(SEGMENTATION_STORAGE);
    expect(ds.string('x00020010')).toBe('1.2.840.10008.1.2.1');
    expect(ds.string('x00080016')).toBe(SEGMENTATION_STORAGE);
    expect(ds.string('x00080060')).toBe('SEG');
    expect(ds.string('x00080008')).toBe('DERIVED\\PRIMARY');
    expect(ds.string('x00620001')).toBe('BINARY');
    expect(ds.string('x00620013')).toBe('NO');
    expect(ds.string('x00200052')).toBe('2.25.63');
    expect(ds.string('x0020000d')).toBe('2.25.60');
    for (const tag of ['x00080070', 'x00081090', 'x00181000', 'x00181020', 'x00200011', 'x00200013', 'x00700080', 'x00282110']) expect(ds.string(tag), tag).toBeTruthy();
    expect(ds.elements['x00209221']?.items).toHaveLength(1);
    expect(ds.elements['x00209222']?.items?.map((item) => item.dataSet?.attributeTag('x00209165'))).toEqual(['x0062000b', 'x00209057']);
    // Both source series are referenced, every image in them (the empty one too).
    const series = ds.elements['x00081115']?.items ?? [];
    expect(series.map((s) => s.dataSet?.string('x0020000e'))).toEqual(['2.25.61', '2.25.62']);
    expect(series.map((s) => s.dataSet?.elements['x0008114a']?.items?.length)).toEqual([3, 1]);
    // Shared orientation and spacing, as every image has the same.
    const shared = ds.elements['x52009229']?.items?.[0]?.dataSet;
    expect(shared?.elements['x00289110']?.items?.[0]?.dataSet?.string('x00280030')).toBe('0.5\\0.75');
    // Segment Algorithm Name only where the segment was not drawn by hand.
    const segments = ds.elements['x00620002']?.items ?? [];
    expect(segments.map((s) => s.dataSet?.string('x00620009'))).toEqual(['Federa phantom generator', undefined, 'Federa phantom generator']);
  });

  it('writes orientation and spacing per frame when the images differ in them', () => {
    const tilted: SegSourceImage = { ...image(3, masks[3] ?? labels(() => 0)), geometry: { ...geometry(9), imageOrientationPatient: [0, 1, 0, 0, 0, -1] } };
    const s = spec({ images: [image(0, masks[0] ?? labels(() => 0)), tilted] });
    const bytes = writeSegmentation(s);
    const ds = dicomParser.parseDicom(bytes);
    expect(ds.elements['x52009229']?.items?.[0]?.dataSet?.elements['x00209116']).toBeUndefined();
    const orientations = (ds.elements['x52009230']?.items ?? []).map((f) => f.dataSet?.elements['x00209116']?.items?.[0]?.dataSet?.string('x00200037'));
    expect(orientations).toEqual(['1\\0\\0\\0\\1\\0', '1\\0\\0\\0\\1\\0', '0\\1\\0\\0\\0\\-1']);
    const seg = readDicomSeg(bytes);
    expect(seg.masks.get('2.25.703')?.labels).toEqual(tilted.labels);
  });

  it('derives its UIDs from the study and sources, so the same input gives the same file', () => {
    const first = writeSegmentation(spec());
    expect(writeSegmentation(spec())).toEqual(first);
    const ds = dicomParser.parseDicom(first);
    expect(ds.string('x00080018')).toBe(syntheticUid('federa-seg', '2.25.60', '2.25.700', '2.25.701', '2.25.702', '2.25.703', 'instance'));
    expect(ds.string('x0020000e')).toBe(syntheticUid('federa-seg', '2.25.60', '2.25.700', '2.25.701', '2.25.702', '2.25.703', 'series'));
    expect(writeSegmentation(spec({ sopInstanceUid: '2.25.9' }))).not.toEqual(first);
  });

  it('writes one lesion segment by default and still one (empty) frame when no image has a lesion', async () => {
    const s = spec({ segments: undefined, frameOfReferenceUid: undefined, images: [image(0, labels(() => 0), false), image(1, labels(() => 0), false)] });
    const bytes = writeSegmentation(s);
    const ds = dicomParser.parseDicom(bytes);
    expect(ds.string('x00280008')).toBe('1');
    expect(ds.elements['x00200052']).toBeUndefined();
    expect(ds.elements['x00200020']).toBeDefined();
    const seg = readDicomSeg(bytes);
    expect(seg.segments).toEqual([{ number: 1, label: 'lesion', algorithmType: 'AUTOMATIC' }]);
    expect([...seg.masks.values()].every((m) => m.labels.every((v) => v === 0))).toBe(true);
    expect(seg.masks.size).toBe(2);
    const dir = await mkdtemp(join(tmpdir(), 'federa-seg-'));
    try {
      await writeFile(join(dir, 'seg.dcm'), bytes);
      expect((await readMaskFile(join(dir, 'seg.dcm'))).kind).toBe('dicom-seg');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  const refusals: { name: string; spec: () => SegSpec; message: string }[] = [
    { name: 'no images', spec: () => spec({ images: [] }), message: 'a Segmentation needs at least one source image' },
    { name: 'a label with no segment', spec: () => spec({ segments: [{ number: 1, label: 'lesion' }] }), message: 'labels of 2.25.700 hold 2, which is no segment (1..1)' },
    { name: 'segments out of order', spec: () => spec({ segments: [{ number: 2, label: 'a' }] }), message: 'segments must be numbered 1, 2, 3... in order; item 1 is 2' },
    { name: 'images of different sizes', spec: () => spec({ images: [image(0, masks[0] ?? labels(() => 0)), { ...image(1, new Uint8Array(6)), rows: 2, columns: 3 }] }), message: 'source image 2.25.701 is 2 x 3' },
    { name: 'labels of the wrong length', spec: () => spec({ images: [image(0, new Uint8Array(5))] }), message: 'labels of 2.25.700 hold 5 values, expected 91' },
    { name: 'geometry without a frame of reference', spec: () => spec({ frameOfReferenceUid: undefined }), message: 'source image geometry needs a frameOfReferenceUid' },
    { name: 'geometry for some images only', spec: () => spec({ images: [image(0, labels(() => 0)), image(1, labels(() => 0), false)] }), message: 'give a geometry for every source image or for none' },
    { name: 'a duplicate source image', spec: () => spec({ images: [image(0, labels(() => 0)), image(0, labels(() => 0))] }), message: 'source image 2.25.700 is listed twice' },
    { name: 'an invalid UID', spec: () => spec({ studyInstanceUid: '2.25.01' }), message: 'is not a valid UID: 2.25.01' },
  ];
  for (const c of refusals) {
    it(`refuses ${c.name}`, () => {
      expect(() => writeSegmentation(c.spec())).toThrow(c.message);
    });
  }
});
