import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { writeSegmentation } from '../../sim/seg-writer.js';
import { decodeDicom } from '../dicom/reader.js';
import { useSimFolders } from './sim-folders.testkit.js';
import { loadRegionDataset, type LoadRegionDatasetOptions } from './load-region.js';

const INPUT = 32;
const { site: simSite, member, folder } = useSimFolders('federa-region-', { imagesPerSite: 8, seed: 5 });

/** The generated image's size and UIDs, which a SEG of it must repeat. */
async function sourceOf(i: number) {
  const { header } = decodeDicom(await readFile(join(simSite().dir, member(i).file)));
  return { rows: header.rows, columns: header.columns, sopInstanceUid: header.sopInstanceUid!, seriesInstanceUid: header.seriesInstanceUid!, studyInstanceUid: header.studyInstanceUid! };
}

/** A rectangle [top, bottom) x [left, right) of `value` on a rows x columns grid. */
function box(rows: number, columns: number, [top, bottom, left, right]: readonly [number, number, number, number], value = 1): Uint8Array {
  const labels = new Uint8Array(rows * columns);
  for (let y = top; y < bottom; y++) for (let x = left; x < right; x++) labels[y * columns + x] = value;
  return labels;
}

/**
 * A SEG of image i with two segments: "lesion" (1), a small square in the right half, and "Body" (2), the given box.
 * (Segments overlapping on one image are read by the SEG reader's own tests; this writer takes label maps.)
 */
async function twoSegmentSeg(i: number, bodyBox: readonly [number, number, number, number] | undefined): Promise<Uint8Array> {
  const s = await sourceOf(i);
  const labels = bodyBox === undefined ? new Uint8Array(s.rows * s.columns) : box(s.rows, s.columns, bodyBox, 2);
  const lesion = box(s.rows, s.columns, [20, 30, s.columns - 12, s.columns - 2]);
  for (let p = 0; p < labels.length; p++) if (lesion[p] === 1) labels[p] = 1;
  return writeSegmentation({
    studyInstanceUid: s.studyInstanceUid,
    patientName: 'Region^Test',
    patientId: `R${i}`,
    studyDate: '20260101',
    segments: [
      { number: 1, label: 'lesion' },
      { number: 2, label: 'Body' },
    ],
    images: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: s.sopInstanceUid, seriesInstanceUid: s.seriesInstanceUid, rows: s.rows, columns: s.columns, labels }],
  });
}

async function png(width: number, height: number, values: (x: number, y: number) => number): Promise<Buffer> {
  const data = Buffer.from(Array.from({ length: width * height }, (_, i) => values(i % width, Math.floor(i / width))));
  return sharp(data, { raw: { width, height, channels: 1 } }).png().toBuffer();
}

const load = (dir: string, over: Partial<LoadRegionDatasetOptions> = {}) =>
  loadRegionDataset({ dir, labelsCsv: join(dir, 'labels.csv'), inputSize: INPUT, channels: 1, classNames: ['normal', 'lesion'], segment: 'body', ...over });
const reasons = (loaded: { rejected: Array<{ file: string; reason: string }> }) => loaded.rejected.map((r) => [r.file, r.reason]).sort();
const maskOf = (masks: Uint8Array, i: number): Uint8Array => masks.subarray(i * INPUT * INPUT, (i + 1) * INPUT * INPUT);
const csv = (rows: ReadonlyArray<readonly [string, string]>): Uint8Array => new TextEncoder().encode(['file,label', ...rows.map(([f, l]) => `${f},${l}`)].join('\n') + '\n');

describe('loadRegionDataset', () => {
  it("keeps each image's class from its labels and gives it the named structure's mask, other segments left out", async () => {
    const side = (await sourceOf(0)).rows;
    const dir = await folder([
      ['images/a.dcm', member(0).file],
      ['images/b.dcm', member(1).file],
      ['masks/a.seg.dcm', await twoSegmentSeg(0, [0, side, 0, side / 2])],
      ['masks/b.seg.dcm', await twoSegmentSeg(1, [0, side, 0, side / 2])],
      // The consortium's own lesion SEGs hold no "body": they are about another structure and claim nothing.
      ['masks/a.lesion.seg.dcm', member(0).mask],
      ['labels.csv', csv([['images/a.dcm', 'lesion'], ['images/b.dcm', 'normal']])],
    ]);
    const loaded = await load(dir);
    expect(loaded.rejected).toEqual([]);
    expect(loaded.files).toEqual(['images/a.dcm', 'images/b.dcm']);
    expect(Array.from(loaded.images.labels)).toEqual([1, 0]);
    expect(loaded.classCounts).toEqual({ normal: 1, lesion: 1 });
    expect(loaded.maskFiles).toEqual(['masks/a.seg.dcm', 'masks/b.seg.dcm']);
    // The left half is the region; the lesion square in the right half is not.
    expect(Array.from(maskOf(loaded.images.masks, 0))).toEqual(Array.from(box(INPUT, INPUT, [0, INPUT, 0, INPUT / 2])));
    expect(loaded.images.masks.length).toBe(2 * INPUT * INPUT);
  });

  it('rejects, each with its reason, images without the structure, without a label, and rows without a file', async () => {
    const side = (await sourceOf(0)).rows;
    const dir = await folder([
      ['images/a.dcm', member(0).file],
      ['images/empty.dcm', member(1).file],
      ['images/unmasked.dcm', member(2).file],
      ['images/unlabelled.dcm', member(3).file],
      ['images/other.dcm', member(4).file],
      ['masks/a.seg.dcm', await twoSegmentSeg(0, [4, side - 4, 4, side - 4])],
      ['masks/empty.seg.dcm', await twoSegmentSeg(1, undefined)],
      ['masks/unlabelled.seg.dcm', await twoSegmentSeg(3, [4, side - 4, 4, side - 4])],
      ['masks/other.seg.dcm', await twoSegmentSeg(4, [4, side - 4, 4, side - 4])],
      [
        'labels.csv',
        csv([
          ['images/a.dcm', 'normal'],
          ['images/empty.dcm', 'lesion'],
          ['images/unmasked.dcm', 'lesion'],
          ['images/other.dcm', 'fracture'],
          ['images/gone.dcm', 'normal'],
        ]),
      ],
    ]);
    const loaded = await load(dir, { segment: ' BODY ' });
    expect(loaded.files).toEqual(['images/a.dcm']);
    expect(reasons(loaded)).toEqual([
      ['images/empty.dcm', 'missing-mask'],
      ['images/gone.dcm', 'missing-file'],
      ['images/other.dcm', 'unknown-label'],
      ['images/unlabelled.dcm', 'missing-label'],
      ['images/unmasked.dcm', 'missing-mask'],
      // The unlabelled image's SEG has no image to go to.
      ['masks/other.seg.dcm', 'missing-image'],
      ['masks/unlabelled.seg.dcm', 'missing-image'],
    ]);
    const message = (file: string) => loaded.rejected.find((r) => r.file === file)?.message;
    expect(message('images/empty.dcm')).toBe(`images/empty.dcm: its mask in masks/empty.seg.dcm outlines no BODY on the study's ${INPUT}x${INPUT} grid`);
    expect(message('images/other.dcm')).toBe('images/other.dcm: label "fracture" is not one of normal, lesion');
  });

  it('reads PNG masks beside the images in class folders, with pngValue picking one structure of a label map', async () => {
    const side = (await sourceOf(0)).rows;
    // 1 on the top half, 2 on the bottom-left quarter, 0 elsewhere.
    const map = await png(side, side, (x, y) => (y < side / 2 ? 1 : x < side / 2 ? 2 : 0));
    const dir = await folder([
      ['lesion/a.dcm', member(0).file],
      ['lesion/a.mask.png', map],
      ['normal/b.dcm', member(1).file],
      ['normal/b.mask.png', map],
    ]);
    const any = await load(dir, { labelsCsv: undefined });
    expect(any.rejected).toEqual([]);
    expect(Array.from(any.images.labels)).toEqual([1, 0]);
    const top = box(INPUT, INPUT, [0, INPUT / 2, 0, INPUT]);
    const quarter = box(INPUT, INPUT, [INPUT / 2, INPUT, 0, INPUT / 2]);
    expect(Array.from(maskOf(any.images.masks, 0))).toEqual(Array.from(top.map((v, p) => v | (quarter[p] ?? 0))));
    const second = await load(dir, { labelsCsv: undefined, pngValue: 2 });
    expect(Array.from(maskOf(second.images.masks, 1))).toEqual(Array.from(quarter));
  });
});
