import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DicomRejection } from '../dicom/rejection.js';
import { packBits, part10, text } from './dicom-build.testkit.js';
import { MaskError } from './errors.js';
import { matchMasks, maskValueLabelsSchema, readMaskFile, roiLabelsSchema, type MaskFile } from './index.js';
import { buildSeg } from './seg.testkit.js';

const mask = (rows: number, columns: number, fill = 0): MaskFile['masks'] extends ReadonlyMap<string, infer M> ? M : never => ({
  rows,
  columns,
  labels: new Uint8Array(rows * columns).fill(fill),
});
const maskFile = (file: string, entries: [string, ReturnType<typeof mask>][]): MaskFile => ({ kind: 'dicom-seg', file, segments: [], masks: new Map(entries), unresolved: [] });

describe('matchMasks', () => {
  it('pairs images with masks by SOP Instance UID, then by file key, and reports the rest', () => {
    const images = [
      { sopInstanceUid: '2.25.1', rows: 2, columns: 3, id: 'a' },
      { sopInstanceUid: '2.25.2', fileKey: 'b.png', rows: 2, columns: 3, id: 'b' },
      { sopInstanceUid: '2.25.3', rows: 2, columns: 3, id: 'c' },
    ];
    const result = matchMasks(images, [maskFile('seg.dcm', [['2.25.1', mask(2, 3, 1)], ['2.25.9', mask(2, 3)]]), maskFile('b.png', [['b.png', mask(2, 3, 2)]])]);
    expect(result.pairs.map((p) => [p.image.id, p.key, p.file, p.mask.labels[0]])).toEqual([
      ['a', '2.25.1', 'seg.dcm', 1],
      ['b', 'b.png', 'b.png', 2],
    ]);
    expect(result.imagesWithoutMask.map((i) => i.id)).toEqual(['c']);
    expect(result.masksWithoutImage).toEqual([{ key: '2.25.9', file: 'seg.dcm' }]);
  });

  it('refuses a mask whose size differs from its image', () => {
    const run = (): unknown => matchMasks([{ sopInstanceUid: '2.25.1', rows: 3, columns: 2 }], maskFile('seg.dcm', [['2.25.1', mask(2, 3)]]));
    expect(run).toThrow(MaskError);
    expect(run).toThrow('seg.dcm: mask for image 2.25.1 is 2 x 3 but the image is 3 x 2 (rows x columns)');
  });

  it('refuses an image that has masks in two files', () => {
    const files = [maskFile('one.dcm', [['2.25.1', mask(1, 1)]]), maskFile('two.dcm', [['2.25.1', mask(1, 1)]])];
    expect(() => matchMasks([], files)).toThrow('two.dcm: image 2.25.1 also has a mask in one.dcm; which one applies is ambiguous');
  });
});

describe('readMaskFile', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-masks-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('tells SEG, PNG and other files apart by content, not by name', async () => {
    const seg = buildSeg({ rows: 1, columns: 3, frames: [{ segment: 1, sources: ['2.25.1'] }], pixelData: packBits([1, 0, 1]) });
    await writeFile(join(dir, 'mask.png'), seg);
    const fromSeg = await readMaskFile(join(dir, 'mask.png'));
    expect(fromSeg.kind).toBe('dicom-seg');
    expect([...(fromSeg.masks.get('2.25.1')?.labels ?? [])]).toEqual([1, 0, 1]);

    const png = await sharp(Uint8Array.from([0, 9, 0]), { raw: { width: 3, height: 1, channels: 1 } }).png().toBuffer();
    await writeFile(join(dir, 'mask.dcm'), png);
    const fromPng = await readMaskFile(join(dir, 'mask.dcm'), { imageKey: '2.25.1' });
    expect(fromPng).toMatchObject({ kind: 'png', file: join(dir, 'mask.dcm') });
    expect([...(fromPng.masks.get('2.25.1')?.labels ?? [])]).toEqual([0, 1, 0]);

    await writeFile(join(dir, 'ct.dcm'), part10([text(0x00080060, 'CS', 'CT')], '1.2.840.10008.5.1.4.1.1.2', '2.25.5'));
    await expect(readMaskFile(join(dir, 'ct.dcm'), { file: 'ct.dcm' })).rejects.toThrow(
      'ct.dcm: DICOM SOP Class UID (0008,0016) 1.2.840.10008.5.1.4.1.1.2 is neither Segmentation nor RT Structure Set',
    );
    await writeFile(join(dir, 'notes.txt'), 'not an image at all, just some text that is long enough to look at');
    await expect(readMaskFile(join(dir, 'notes.txt'), { file: 'notes.txt' })).rejects.toMatchObject({ reason: 'not-a-mask', message: 'notes.txt: neither PNG nor DICOM' });
  });

  it('keeps the DICOM reader’s reason for a damaged file', async () => {
    const seg = buildSeg({ rows: 1, columns: 3, frames: [{ segment: 1, sources: ['2.25.1'] }], pixelData: packBits([1, 0, 1]) });
    await writeFile(join(dir, 'cut.dcm'), seg.subarray(0, 300));
    await expect(readMaskFile(join(dir, 'cut.dcm'))).rejects.toBeInstanceOf(DicomRejection);
  });
});

describe('label map schemas', () => {
  it('turn JSON maps into Maps and refuse bad labels', () => {
    expect(maskValueLabelsSchema.parse({ '255': 1, '128': 2 })).toEqual(new Map([[128, 2], [255, 1]]));
    expect(roiLabelsSchema.parse({ GTV: 1 })).toEqual(new Map([['GTV', 1]]));
    expect(maskValueLabelsSchema.safeParse({ '-1': 1 }).success).toBe(false);
    expect(roiLabelsSchema.safeParse({ GTV: 0 }).success).toBe(false);
    expect(maskValueLabelsSchema.safeParse({ '1': 256 }).success).toBe(false);
  });
});

describe('matchMasks reporting mismatches', () => {
  it('lists images with a wrong-size or ambiguous mask instead of throwing, and keeps the rest', () => {
    const m = (rows: number, columns: number): MaskFile['masks'] extends ReadonlyMap<string, infer M> ? M : never => ({ rows, columns, labels: new Uint8Array(rows * columns) });
    const file = (name: string, entries: [string, ReturnType<typeof m>][]): MaskFile => ({ kind: 'dicom-seg', file: name, segments: [], masks: new Map(entries), unresolved: [] });
    const images = [
      { sopInstanceUid: '2.25.1', rows: 2, columns: 2 },
      { sopInstanceUid: '2.25.2', rows: 2, columns: 2 },
      { sopInstanceUid: '2.25.3', rows: 2, columns: 2 },
    ];
    const result = matchMasks(images, [file('one.dcm', [['2.25.1', m(2, 2)], ['2.25.2', m(3, 2)], ['2.25.3', m(2, 2)]]), file('two.dcm', [['2.25.3', m(2, 2)]])], { mismatches: 'report' });
    expect(result.pairs.map((p) => p.key)).toEqual(['2.25.1']);
    expect(result.mismatched.map((x) => [x.key, x.error.message])).toEqual([
      ['2.25.2', 'one.dcm: mask for image 2.25.2 is 3 x 2 but the image is 2 x 2 (rows x columns)'],
      ['2.25.3', 'two.dcm: image 2.25.3 also has a mask in one.dcm; which one applies is ambiguous'],
    ]);
    expect(result.imagesWithoutMask).toEqual([]);
    expect(result.masksWithoutImage).toEqual([]);
  });
});
