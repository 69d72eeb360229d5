import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readDicomFile } from '../dicom/reader.js';
import { preprocessFrame } from '../preprocess/preprocess.js';
import { mapWithConcurrency } from './concurrency.js';
import { LabelsCsvError } from './labels-csv.js';
import { loadLabeledDataset, type LabeledImages } from './load.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'federa-dataset-'));
  await mkdir(join(dir, 'images', 'nested'), { recursive: true });
  const copies: Array<[string, string]> = [
    ['MR_small.dcm', 'images/mr.dcm'],
    ['CT_small.dcm', 'images/ct.dcm'],
    ['MR_small_bigendian.dcm', 'images/nested/mr-be.dcm'],
    ['no_meta.dcm', 'images/no-meta.dcm'],
    ['MR_truncated.dcm', 'images/truncated.dcm'],
    ['test-SR.dcm', 'images/report.dcm'],
    ['zipMR.gz', 'images/zipped.dcm'],
    ['MR_small_implicit.dcm', 'images/unlabelled.dcm'],
    ['MR_small_expb.dcm', 'images/odd-class.dcm'],
  ];
  for (const [from, to] of copies) await copyFile(join(testdata, from), join(dir, to));
  // A syntax the reader has no codec for: JPEG2000.dcm relabelled as JPEG 2000 Part 2 (same UID length).
  const j2k = await readFile(join(testdata, 'JPEG2000.dcm'));
  const uid = j2k.indexOf('1.2.840.10008.1.2.4.91');
  j2k.write('1.2.840.10008.1.2.4.93', uid, 'latin1');
  await writeFile(join(dir, 'images/j2k.dcm'), j2k);
  await writeFile(join(dir, '.DS_Store'), 'junk');
  await writeFile(
    join(dir, 'labels.csv'),
    [
      'file,label',
      'images/mr.dcm,lesion',
      'images/ct.dcm,normal',
      'images/nested/mr-be.dcm,normal',
      'images/no-meta.dcm,lesion',
      'images/truncated.dcm,normal',
      'images/report.dcm,normal',
      'images/j2k.dcm,lesion',
      'images/zipped.dcm,lesion',
      'images/odd-class.dcm,tumour',
      'images/gone.dcm,normal',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadLabeledDataset', () => {
  it('loads good files, reports every bad one with a reason, and never throws for bad images', async () => {
    const progress: Array<[number, number]> = [];
    const result = await loadLabeledDataset({
      dir,
      labelsCsv: join(dir, 'labels.csv'),
      inputSize: 32,
      channels: 1,
      classNames: ['normal', 'lesion'],
      onProgress: (done, total) => progress.push([done, total]),
      concurrency: 3,
    });

    // Compile-time check that the result satisfies the training module's interface shape.
    const images: LabeledImages = result.images;
    expect(images.count).toBe(4);
    expect(images).toMatchObject({ height: 32, width: 32, channels: 1 });
    expect(images.images).toHaveLength(4 * 32 * 32);
    expect(result.files).toEqual(['images/ct.dcm', 'images/mr.dcm', 'images/nested/mr-be.dcm', 'images/no-meta.dcm']);
    expect(Array.from(images.labels)).toEqual([0, 1, 0, 1]);
    expect(result.classCounts).toEqual({ normal: 2, lesion: 2 });
    for (const v of images.images) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }

    const reasons = Object.fromEntries(result.rejected.map((r) => [r.file, r.reason]));
    expect(reasons).toEqual({
      'images/gone.dcm': 'missing-file',
      'images/j2k.dcm': 'unsupported-transfer-syntax',
      'images/odd-class.dcm': 'unknown-label',
      'images/report.dcm': 'no-pixel-data',
      'images/truncated.dcm': 'truncated',
      'images/unlabelled.dcm': 'missing-label',
      'images/zipped.dcm': 'not-dicom',
    });
    for (const r of result.rejected) expect(r.message).toContain(r.file);

    expect(progress).toHaveLength(11);
    expect(progress.map(([d]) => d)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(progress.every(([, t]) => t === 11)).toBe(true);
  });

  it('packs each image in NHWC order exactly as preprocessFrame produces it', async () => {
    const result = await loadLabeledDataset({ dir, labelsCsv: join(dir, 'labels.csv'), inputSize: 32, channels: 1, classNames: ['normal', 'lesion'] });
    const index = result.files.indexOf('images/mr.dcm');
    const expected = await preprocessFrame(await readDicomFile(join(testdata, 'MR_small.dcm')), { inputSize: 32 });
    expect(Array.from(result.images.images.subarray(index * 1024, (index + 1) * 1024))).toEqual(Array.from(expected));
    // Big-endian copy of the same MR image must land on identical model input.
    const be = result.files.indexOf('images/nested/mr-be.dcm');
    expect(Array.from(result.images.images.subarray(be * 1024, (be + 1) * 1024))).toEqual(Array.from(expected));
  });

  it('throws LabelsCsvError naming the line for a malformed CSV', async () => {
    const bad = join(dir, 'bad.csv');
    await writeFile(bad, 'file,label\nimages/mr.dcm,lesion\nimages/ct.dcm\n');
    const error = await loadLabeledDataset({ dir, labelsCsv: bad, inputSize: 16, channels: 1, classNames: ['normal', 'lesion'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LabelsCsvError);
    expect((error as LabelsCsvError).issues).toEqual([{ line: 3, column: undefined, message: 'expected 2 fields, found 1' }]);
    await rm(bad);
  });

  it('validates options', async () => {
    await expect(loadLabeledDataset({ dir, labelsCsv: join(dir, 'labels.csv'), inputSize: 0, channels: 1, classNames: ['a', 'b'] })).rejects.toThrow(/inputSize/);
    await expect(loadLabeledDataset({ dir, labelsCsv: join(dir, 'labels.csv'), inputSize: 8, channels: 1, classNames: ['a', 'a'] })).rejects.toThrow(/unique/);
  });
});

describe('mapWithConcurrency', () => {
  it('keeps order and never exceeds the limit', async () => {
    let active = 0;
    let peak = 0;
    const out = await mapWithConcurrency([5, 1, 4, 2, 3, 0], 2, async (n) => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, n * 3));
      active--;
      return n * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30, 0]);
    expect(peak).toBe(2);
  });
});
