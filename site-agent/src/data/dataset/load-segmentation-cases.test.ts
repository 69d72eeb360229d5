import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { preprocessingSchema } from '@federa/shared';
import { is, part10, seq, text, ds, type El } from '../masks/dicom-build.testkit.js';
import { readImageGeometry } from '../masks/geometry.js';
import { RT_STRUCTURE_SET_SOP_CLASS_UID } from '../masks/rtstruct.js';
import { preprocessMask } from '../preprocess/mask.js';
import { useSimFolders } from './sim-folders.testkit.js';
import { loadSegmentationDataset, type LoadSegmentationDatasetOptions } from './load-segmentation.js';

const INPUT = 32;
const { site: simSite, member, folder } = useSimFolders('federa-seg-cases-', { imagesPerSite: 6, seed: 3 });

const lesionIndex = (): number => simSite().members.findIndex((m) => m.label === 'lesion');
const normalIndex = (): number => simSite().members.findIndex((m) => m.label === 'normal');

const load = (dir: string, over: Partial<LoadSegmentationDatasetOptions> = {}) => loadSegmentationDataset({ dir, inputSize: INPUT, channels: 1, segments: ['lesion'], ...over });
const reasons = (loaded: { rejected: Array<{ file: string; reason: string }> }) => loaded.rejected.map((r) => [r.file, r.reason]).sort();
const maskOf = (masks: Uint8Array, i: number): Uint8Array => masks.subarray(i * INPUT * INPUT, (i + 1) * INPUT * INPUT);

async function png(width: number, height: number, values: (x: number, y: number) => number): Promise<Buffer> {
  const data = Buffer.from(Array.from({ length: width * height }, (_, i) => values(i % width, Math.floor(i / width))));
  return sharp(data, { raw: { width, height, channels: 1 } }).png().toBuffer();
}

describe('loadSegmentationDataset: images without masks and masks without images', () => {
  it('rejects an image no mask covers as missing-mask, or gives it a background mask when asked', async () => {
    const [a, b] = [member(lesionIndex()), member(normalIndex())];
    const dir = await folder([
      ['images/a.dcm', a.file],
      ['images/b.dcm', b.file],
      ['masks/a.seg.dcm', a.mask],
    ]);
    const strict = await load(dir);
    expect(reasons(strict)).toEqual([['images/b.dcm', 'missing-mask']]);
    expect(strict.rejected[0]?.message).toMatch(/^images\/b\.dcm: no mask \(no Segmentation or RT Structure Set for SOP Instance UID [0-9.]+, no images\/b\.mask\.png beside it\)$/);
    expect(strict.files).toEqual(['images/a.dcm']);

    const lenient = await load(dir, { unmasked: 'background' });
    expect(lenient.rejected).toEqual([]);
    expect(lenient.files).toEqual(['images/a.dcm', 'images/b.dcm']);
    expect(lenient.maskFiles).toEqual(['masks/a.seg.dcm', undefined]);
    expect(Array.from(lenient.images.labels)).toEqual([1, 0]);
    expect(maskOf(lenient.images.masks, 1).every((v) => v === 0)).toBe(true);
  });

  it('reports a mask whose image is missing or was rejected as missing-image, against the mask file', async () => {
    const [a, b] = [member(0), member(1)];
    const cut = await readFile(join(simSite().dir, b.file));
    const dir = await folder([
      ['masks/a.seg.dcm', a.mask],
      ['images/b.dcm', cut.subarray(0, cut.length - 300)],
      ['masks/b.seg.dcm', b.mask],
      ['lone.mask.png', await png(4, 4, () => 1)],
    ]);
    const loaded = await load(dir);
    expect(loaded.images.count).toBe(0);
    expect(reasons(loaded)).toEqual([
      ['images/b.dcm', 'truncated'],
      ['lone.mask.png', 'missing-image'],
      ['masks/a.seg.dcm', 'missing-image'],
      ['masks/b.seg.dcm', 'missing-image'],
    ]);
    expect(loaded.rejected.find((r) => r.file === 'masks/a.seg.dcm')?.message).toMatch(/^masks\/a\.seg\.dcm: 1 of its 1 mask\(s\) are for images not loaded from /);
    expect(loaded.rejected.find((r) => r.file === 'lone.mask.png')?.message).toBe('lone.mask.png: no image lone.<ext> beside it');
  });
});

describe('loadSegmentationDataset: masks that cannot be used', () => {
  it('refuses a segment the study does not name, and the image it covers, even when unmasked images may be background', async () => {
    const a = member(lesionIndex());
    const dir = await folder([
      ['images/a.dcm', a.file],
      ['masks/a.seg.dcm', a.mask],
    ]);
    const loaded = await load(dir, { segments: ['tumour', 'cyst'], unmasked: 'background' });
    expect(loaded.images.count).toBe(0);
    expect(reasons(loaded)).toEqual([
      ['images/a.dcm', 'mask-mismatch'],
      ['masks/a.seg.dcm', 'mask-mismatch'],
    ]);
    expect(loaded.rejected.find((r) => r.file === 'masks/a.seg.dcm')?.message).toBe('masks/a.seg.dcm: segment "lesion" (1) is not among the study\'s segments (tumour, cyst)');
    expect(loaded.rejected.find((r) => r.file === 'images/a.dcm')?.message).toMatch(/^images\/a\.dcm: its mask file masks\/a\.seg\.dcm cannot be used/);
    // Names are compared trimmed and case-insensitively.
    expect((await load(dir, { segments: [' Lesion '] })).rejected).toEqual([]);
  });

  it('gives a damaged SEG the DICOM reader’s reason; its image then has no mask', async () => {
    const a = member(0);
    const seg = await readFile(join(simSite().dir, a.mask));
    const dir = await folder([
      ['images/a.dcm', a.file],
      ['masks/a.seg.dcm', seg.subarray(0, seg.length - 40)],
    ]);
    expect(reasons(await load(dir))).toEqual([
      ['images/a.dcm', 'missing-mask'],
      ['masks/a.seg.dcm', 'truncated'],
    ]);
  });

  it('refuses an image two mask files claim, and keeps the first copy of a repeated instance', async () => {
    const [a, b] = [member(0), member(1)];
    const dir = await folder([
      ['images/a.dcm', a.file],
      ['masks/a.seg.dcm', a.mask],
      ['more/a-again.seg.dcm', a.mask],
      ['images/b.dcm', b.file],
      ['images/copy-of-b.dcm', b.file],
      ['masks/b.seg.dcm', b.mask],
    ]);
    const loaded = await load(dir);
    expect(loaded.files).toEqual(['images/b.dcm']);
    expect(reasons(loaded)).toEqual([
      ['images/a.dcm', 'mask-mismatch'],
      ['images/copy-of-b.dcm', 'duplicate-instance'],
    ]);
    expect(loaded.rejected.find((r) => r.reason === 'mask-mismatch')?.message).toMatch(/also has a mask in .*; which one applies is ambiguous/);
  });

  it('refuses options it cannot honour', async () => {
    const dir = await folder([]);
    await expect(load(dir, { segments: [] })).rejects.toThrow(RangeError);
    await expect(load(dir, { segments: ['lesion', ' LESION'] })).rejects.toThrow(/unique/);
    await expect(load(dir, { inputSize: 0 })).rejects.toThrow(/inputSize/);
  });
});

describe('loadSegmentationDataset: PNG masks', () => {
  const lShape = (x: number, y: number): boolean => (x >= 6 && x < 14 && y >= 4 && y < 40) || (y >= 30 && y < 40 && x >= 6 && x < 44);

  it('pairs <name>.mask.png with the image beside it, DICOM or PNG, and transforms it as the image', async () => {
    const a = member(normalIndex());
    const photo = await sharp(Buffer.from(Array.from({ length: 50 * 44 }, (_, i) => i % 251)), { raw: { width: 50, height: 44, channels: 1 } }).png().toBuffer();
    const dir = await folder([
      ['scans/ct.dcm', a.file],
      // 0/255 as binary masks are usually saved: any non-zero value is the one segment.
      ['scans/ct.mask.png', await png(64, 64, (x, y) => (lShape(x, y) ? 255 : 0))],
      ['photos/p.png', photo],
      ['photos/p.mask.png', await png(50, 44, (x, y) => (lShape(x, y) ? 1 : 0))],
    ]);
    const preprocessing = preprocessingSchema.parse({ resize: 'letterbox', cropFraction: 0.9 });
    const loaded = await load(dir, { preprocessing });
    expect(loaded.rejected).toEqual([]);
    expect(loaded.files).toEqual(['photos/p.png', 'scans/ct.dcm']);
    expect(loaded.maskFiles).toEqual(['photos/p.mask.png', 'scans/ct.mask.png']);
    const expected = (columns: number, rows: number) =>
      preprocessMask({ rows, columns, labels: Uint8Array.from({ length: rows * columns }, (_, i) => (lShape(i % columns, Math.floor(i / columns)) ? 1 : 0)) }, { inputSize: INPUT, preprocessing });
    expect(maskOf(loaded.images.masks, 0)).toEqual(expected(50, 44));
    expect(maskOf(loaded.images.masks, 1)).toEqual(expected(64, 64));
    expect(Array.from(loaded.images.labels)).toEqual([1, 1]);
  });

  it('reads PNG values as class indices when the study has several segments', async () => {
    const a = member(0);
    const dir = await folder([
      ['a.dcm', a.file],
      ['a.mask.png', await png(64, 64, (x, y) => (y < 10 ? 2 : x < 10 ? 1 : 0))],
    ]);
    const loaded = await load(dir, { segments: ['organ', 'lesion'], preprocessing: preprocessingSchema.parse({ resize: 'stretch' }) });
    expect(loaded.rejected).toEqual([]);
    const mask = maskOf(loaded.images.masks, 0);
    expect([mask[0], mask[6 * INPUT], mask[6 * INPUT + 20]]).toEqual([2, 1, 0]);
    // Output row j samples source row 2j + 1: rows 0-4 are segment 2, columns 0-4 of the rest segment 1.
    expect(loaded.pixelCounts).toEqual([INPUT * INPUT - 5 * 32 - 5 * 27, 5 * 27, 5 * 32]);

    await writeFile(join(dir, 'a.mask.png'), await png(64, 64, (x) => (x === 3 ? 3 : 0)));
    const bad = await load(dir, { segments: ['organ', 'lesion'] });
    expect(reasons(bad)).toEqual([
      ['a.dcm', 'mask-mismatch'],
      ['a.mask.png', 'mask-mismatch'],
    ]);
    expect(bad.rejected.find((r) => r.file === 'a.mask.png')?.message).toMatch(/mask values not in the value-to-label map: 3 \(64 pixels\)/);
  });

  it('refuses a PNG mask of another size than its image, and one that could belong to two images', async () => {
    const [a, b] = [member(0), member(1)];
    const dir = await folder([
      ['a.dcm', a.file],
      ['a.mask.png', await png(60, 64, () => 0)],
      ['b.dcm', b.file],
      ['b.png', await png(64, 64, () => 9)],
      ['b.mask.png', await png(64, 64, () => 0)],
    ]);
    const loaded = await load(dir);
    expect(loaded.images.count).toBe(0);
    expect(reasons(loaded)).toEqual([
      ['a.dcm', 'mask-mismatch'],
      ['b.dcm', 'mask-mismatch'],
      ['b.mask.png', 'mask-mismatch'],
      ['b.png', 'mask-mismatch'],
    ]);
    expect(loaded.rejected.find((r) => r.file === 'a.dcm')?.message).toBe('a.mask.png: mask for image file:a.dcm is 64 x 60 but the image is 64 x 64 (rows x columns)');
    expect(loaded.rejected.find((r) => r.file === 'b.mask.png')?.message).toBe('b.mask.png: could belong to b.dcm or b.png; rename so one image matches');
  });
});

describe('loadSegmentationDataset: RT Structure Sets', () => {
  let structureSets = 0;
  /** A structure set with one square contour per ROI on the image, in its patient coordinates (1 mm pixels at the origin). */
  async function rtstruct(imageFile: string, rois: ReadonlyArray<{ name: string; square: readonly [number, number, number, number] }>): Promise<Uint8Array> {
    const { sopInstanceUid, geometry } = readImageGeometry(await readFile(join(simSite().dir, imageFile)));
    const frame = geometry.frameOfReferenceUid ?? '2.25.1';
    const image: El[] = [text(0x00081150, 'UI', '1.2.840.10008.5.1.4.1.1.2'), text(0x00081155, 'UI', sopInstanceUid)];
    const contour = ([x0, y0, x1, y1]: readonly [number, number, number, number]): El[] => [
      text(0x30060042, 'CS', 'CLOSED_PLANAR'),
      is(0x30060046, 4),
      ds(0x30060050, x0, y0, 0, x1, y0, 0, x1, y1, 0, x0, y1, 0),
      seq(0x30060016, image),
    ];
    return part10(
      [
        text(0x00080060, 'CS', 'RTSTRUCT'),
        text(0x30060002, 'SH', 'TEST'),
        seq(0x30060010, [text(0x00200052, 'UI', frame)]),
        seq(0x30060020, ...rois.map((r, i) => [is(0x30060022, i + 1), text(0x30060024, 'UI', frame), text(0x30060026, 'LO', r.name)])),
        seq(0x30060039, ...rois.map((r, i) => [is(0x30060084, i + 1), seq(0x30060040, contour(r.square))])),
      ],
      RT_STRUCTURE_SET_SOP_CLASS_UID,
      `2.25.77${++structureSets}`,
    );
  }

  it('rasterises ROI contours onto the image grid, then through the pipeline', async () => {
    const a = member(0);
    const dir = await folder([
      ['ct/a.dcm', a.file],
      ['rt/a-structures.dcm', await rtstruct(a.file, [{ name: 'Lesion', square: [10, 30, 20, 40] }])],
    ]);
    const loaded = await load(dir);
    expect(loaded.rejected).toEqual([]);
    expect(loaded.maskFiles).toEqual(['rt/a-structures.dcm']);
    // Centres on the left and top edges are inside, on the right and bottom edges outside: columns 10-19, rows 30-39.
    const square = Uint8Array.from({ length: 64 * 64 }, (_, i) => (i % 64 >= 10 && i % 64 < 20 && Math.floor(i / 64) >= 30 && Math.floor(i / 64) < 40 ? 1 : 0));
    expect(maskOf(loaded.images.masks, 0)).toEqual(preprocessMask({ rows: 64, columns: 64, labels: square }, { inputSize: INPUT }));
    expect(loaded.pixelCounts[1]).toBe(25);
  });

  it('refuses a structure set with an ROI the study does not name', async () => {
    const a = member(0);
    const dir = await folder([
      ['ct/a.dcm', a.file],
      ['rt/a.dcm', await rtstruct(a.file, [{ name: 'lesion', square: [10, 30, 20, 40] }, { name: 'Body', square: [0, 0, 64, 64] }])],
    ]);
    const loaded = await load(dir);
    expect(reasons(loaded)).toEqual([
      ['ct/a.dcm', 'mask-mismatch'],
      ['rt/a.dcm', 'mask-mismatch'],
    ]);
    expect(loaded.rejected.find((r) => r.file === 'rt/a.dcm')?.message).toBe('rt/a.dcm: segment "Body" (2) is not among the study\'s segments (lesion)');
  });

  it('reads only the named structure with segmentsRead named: another ROI neither refuses the file nor paints over it', async () => {
    const a = member(0);
    const dir = await folder([
      ['ct/a.dcm', a.file],
      // The lesion (ROI 2) would paint over the body (ROI 1) where they overlap.
      ['rt/a.dcm', await rtstruct(a.file, [{ name: 'BODY', square: [0, 0, 32, 64] }, { name: 'lesion', square: [10, 30, 20, 40] }])],
    ]);
    const loaded = await load(dir, { segments: ['body'], segmentsRead: 'named' });
    expect(loaded.rejected).toEqual([]);
    const body = Uint8Array.from({ length: 64 * 64 }, (_, i) => (i % 64 < 32 ? 1 : 0));
    expect(maskOf(loaded.images.masks, 0)).toEqual(preprocessMask({ rows: 64, columns: 64, labels: body }, { inputSize: INPUT }));
  });
});
