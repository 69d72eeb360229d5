import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocessingSchema } from '@federa/shared';
import { readDicomFile } from '../dicom/reader.js';
import { preprocessImage } from '../preprocess/preprocess.js';
import { decodeRaster } from '../preprocess/raster.js';
import { scanDataset } from '../scan/scan.js';
import { syntheticUid } from '../../sim/rng.js';
import { writeDicomPart10 } from '../../sim/writer.js';
import { loadLabeledDataset } from './load.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');

const greyPng = (): Promise<Buffer> =>
  sharp(new Uint8Array(40 * 30).map((_, i) => (i * 7) % 256), { raw: { width: 40, height: 30, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
const colourJpeg = (): Promise<Buffer> =>
  sharp(new Uint8Array(24 * 24 * 3).map((_, i) => (i % 3 === 0 ? 220 : 40)), { raw: { width: 24, height: 24, channels: 3 } })
    .jpeg({ quality: 95 })
    .toBuffer();

const reasons = (rejected: Array<{ file: string; reason: string }>): Record<string, string> => Object.fromEntries(rejected.map((r) => [r.file, r.reason]));

let root: string;
let mrSop: string;
let mrStudy: string;
let ctSop: string;
let ctStudy: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'federa-layouts-'));
  const mr = await readDicomFile(join(testdata, 'MR_small.dcm'));
  const ct = await readDicomFile(join(testdata, 'CT_small.dcm'));
  mrSop = mr.header.sopInstanceUid ?? '';
  mrStudy = mr.header.studyInstanceUid ?? '';
  ctSop = ct.header.sopInstanceUid ?? '';
  ctStudy = ct.header.studyInstanceUid ?? '';
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('folder per class', () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(root, 'folders');
    for (const folder of ['normal', 'lesion', 'tumour']) await mkdir(join(dir, folder), { recursive: true });
    await copyFile(join(testdata, 'CT_small.dcm'), join(dir, 'normal/ct.dcm'));
    await copyFile(join(testdata, 'MR_small_bigendian.dcm'), join(dir, 'normal/mr-be.dcm'));
    await copyFile(join(testdata, 'MR_small.dcm'), join(dir, 'lesion/mr.dcm'));
    await writeFile(join(dir, 'lesion/photo.png'), await greyPng());
    await writeFile(join(dir, 'lesion/colour.jpg'), await colourJpeg());
    const png = await greyPng();
    await writeFile(join(dir, 'lesion/cut.png'), png.subarray(0, png.length - 60));
    await writeFile(join(dir, 'lesion/notes.txt'), 'consent forms are in the other folder');
    await copyFile(join(testdata, 'MR_small_implicit.dcm'), join(dir, 'tumour/x.dcm'));
    await copyFile(join(testdata, 'MR_small.dcm'), join(dir, 'loose.dcm'));
  });

  it('takes the class from the first folder, PNG and JPEG included, and rejects the rest with reasons', async () => {
    const loaded = await loadLabeledDataset({ dir, inputSize: 16, channels: 1, classNames: ['normal', 'lesion'] });
    expect(loaded.files).toEqual(['lesion/colour.jpg', 'lesion/mr.dcm', 'lesion/photo.png', 'normal/ct.dcm', 'normal/mr-be.dcm']);
    expect(Array.from(loaded.images.labels)).toEqual([1, 1, 1, 0, 0]);
    expect(loaded.classCounts).toEqual({ normal: 2, lesion: 3 });
    expect(reasons(loaded.rejected)).toEqual({
      'lesion/cut.png': 'truncated',
      'lesion/notes.txt': 'not-dicom',
      'loose.dcm': 'missing-label',
      'tumour/x.dcm': 'unknown-label',
    });
    expect(loaded.rejected.find((r) => r.file === 'tumour/x.dcm')?.message).toMatch(/folder "tumour" is not one of normal, lesion/);
    // The PNG went through the same pipeline as a direct call would take it.
    const png = await decodeRaster(await readFile(join(dir, 'lesion/photo.png')), 'lesion/photo.png');
    const expected = await preprocessImage(png, { inputSize: 16 });
    const at = loaded.files.indexOf('lesion/photo.png');
    expect(Array.from(loaded.images.images.subarray(at * 256, (at + 1) * 256))).toEqual(Array.from(expected));
  });

  it('gives a 3-channel model colour from the JPEG and three equal channels from grey DICOM', async () => {
    const loaded = await loadLabeledDataset({ dir, inputSize: 8, channels: 3, classNames: ['normal', 'lesion'] });
    expect(loaded.images.channels).toBe(3);
    expect(loaded.images.images).toHaveLength(5 * 8 * 8 * 3);
    const pixel = (file: string, i: number) => {
      const at = loaded.files.indexOf(file) * 8 * 8 * 3 + i * 3;
      return Array.from(loaded.images.images.subarray(at, at + 3));
    };
    const [r, g, b] = pixel('lesion/colour.jpg', 27);
    expect(r).toBeGreaterThan(0.8);
    expect(g).toBeLessThan(0.25);
    expect(b).toBeLessThan(0.25);
    const grey = pixel('normal/ct.dcm', 27);
    expect(grey[0]).toBe(grey[1]);
    expect(grey[1]).toBe(grey[2]);
  });

  it('rejects the images a CT window cannot apply to, and keeps the CT', async () => {
    const loaded = await loadLabeledDataset({
      dir,
      inputSize: 16,
      channels: 1,
      classNames: ['normal', 'lesion'],
      preprocessing: preprocessingSchema.parse({ window: 'ct-lung' }),
    });
    expect(loaded.files).toEqual(['normal/ct.dcm']);
    expect(reasons(loaded.rejected)).toMatchObject({
      'lesion/colour.jpg': 'window-not-applicable',
      'lesion/photo.png': 'window-not-applicable',
      'lesion/mr.dcm': 'window-not-applicable',
      'normal/mr-be.dcm': 'window-not-applicable',
    });
  });

  it('data scan reports by folder class and lists the same rejections', async () => {
    const report = await scanDataset({ dir, layout: 'folders' });
    expect(report.labelledBy).toBe('folder');
    // The scan knows no class list, so "tumour" is counted; the loader rejects it against the study's classes.
    expect(report.byClass).toEqual({ normal: 2, lesion: 3, tumour: 1 });
    expect(report.byTransferSyntax).toMatchObject({ 'PNG file (8-bit grey)': 1, 'JPEG file (8-bit colour)': 1 });
    expect(report.bySize).toMatchObject({ '40x30': 1, '24x24': 1 });
    expect(reasons(report.rejected)).toEqual({
      'lesion/cut.png': 'truncated',
      'lesion/notes.txt': 'not-dicom',
      'loose.dcm': 'missing-label',
    });
  });
});

describe('labels keyed by UID', () => {
  let dir: string;
  beforeAll(async () => {
    dir = join(root, 'uids');
    await mkdir(join(dir, 'export', 'a'), { recursive: true });
    await mkdir(join(dir, 'export', 'b'), { recursive: true });
    await copyFile(join(testdata, 'CT_small.dcm'), join(dir, 'export/a/IM0001'));
    await copyFile(join(testdata, 'MR_small.dcm'), join(dir, 'export/a/IM0002'));
    // The same SOP instance again under another name (a second export of the same image).
    await copyFile(join(testdata, 'MR_small_implicit.dcm'), join(dir, 'export/b/IM0003'));
    await copyFile(join(testdata, 'JPEG2000_UNC.dcm'), join(dir, 'export/IM0004'));
    await writeFile(join(dir, 'export/photo.png'), await greyPng());
  });

  it('SOP Instance UID: labels by header, rejects repeats, unlabelled instances and files without UIDs, and lists rows no file matched', async () => {
    const csv = join(root, 'by-sop.csv');
    await writeFile(csv, `sop_instance_uid,label\n${ctSop},normal\n${mrSop},lesion\n1.2.826.0.1.999,lesion\n`);
    const loaded = await loadLabeledDataset({ dir, labelsCsv: csv, inputSize: 16, channels: 1, classNames: ['normal', 'lesion'] });
    expect(loaded.files).toEqual(['export/a/IM0001', 'export/a/IM0002']);
    expect(Array.from(loaded.images.labels)).toEqual([0, 1]);
    expect(reasons(loaded.rejected)).toEqual({
      'export/b/IM0003': 'duplicate-instance',
      'export/IM0004': 'missing-label',
      'export/photo.png': 'missing-label',
      'by-sop.csv:4': 'missing-file',
    });
    expect(loaded.rejected.find((r) => r.file === 'export/photo.png')?.message).toMatch(/PNG\/JPEG files must be labelled by file path/);

    const report = await scanDataset({ dir, labelsCsv: csv });
    expect(report.labelledBy).toBe('sop_instance_uid');
    expect(report.byClass).toEqual({ normal: 1, lesion: 1 });
    expect(reasons(report.rejected)).toEqual(reasons(loaded.rejected));
  });

  it('Study Instance UID: every image of a labelled study gets its label', async () => {
    const csv = join(root, 'by-study.csv');
    await writeFile(csv, `label,study_instance_uid\nlesion,${mrStudy}\nnormal,${ctStudy}\n`);
    const loaded = await loadLabeledDataset({ dir, labelsCsv: csv, inputSize: 16, channels: 1, classNames: ['normal', 'lesion'] });
    // Both MR copies belong to the labelled MR study; repeats are only refused when labels name instances.
    expect(loaded.files).toEqual(['export/a/IM0001', 'export/a/IM0002', 'export/b/IM0003']);
    expect(loaded.classCounts).toEqual({ normal: 1, lesion: 2 });
    expect(reasons(loaded.rejected)).toEqual({ 'export/IM0004': 'missing-label', 'export/photo.png': 'missing-label' });
  });
});

describe('labels keyed by Series Instance UID', () => {
  // One patient's CT study with three series, as a PACS holds a scan: many instances sharing a series UID.
  const study = syntheticUid('layouts', 'study');
  const series = { chest: syntheticUid('layouts', 'chest'), abdomen: syntheticUid('layouts', 'abdomen'), scout: syntheticUid('layouts', 'scout') };
  let dir: string;

  const instance = (seriesUid: string, number: number): Uint8Array =>
    writeDicomPart10({
      sopClass: 'ct',
      transferSyntax: 'explicit-vr-little-endian',
      sopInstanceUid: syntheticUid('layouts', seriesUid, number),
      studyInstanceUid: study,
      seriesInstanceUid: seriesUid,
      patientName: 'SIMULATED^SERIES',
      patientId: 'SIM-SERIES-1',
      studyDate: '20000101',
      studyId: 'S1',
      seriesNumber: 1,
      instanceNumber: number,
      modality: 'CT',
      institutionName: 'Simulated Hospital (synthetic)',
      rows: 8,
      columns: 8,
      photometricInterpretation: 'MONOCHROME2',
      bitsStored: 12,
      pixelRepresentation: 0,
      rescaleSlope: 1,
      rescaleIntercept: -1024,
      windowCenter: 40,
      windowWidth: 400,
      pixels: Uint16Array.from({ length: 64 }, (_, i) => (i * 61 + number * 17) % 4096),
    });

  beforeAll(async () => {
    dir = join(root, 'series');
    await mkdir(dir, { recursive: true });
    const files: Array<[string, string, number]> = [
      ['chest-1.dcm', series.chest, 1],
      ['chest-2.dcm', series.chest, 2],
      ['chest-3.dcm', series.chest, 3],
      ['abdomen-1.dcm', series.abdomen, 1],
      ['abdomen-2.dcm', series.abdomen, 2],
      ['scout-1.dcm', series.scout, 1],
    ];
    for (const [name, seriesUid, number] of files) await writeFile(join(dir, name), instance(seriesUid, number));
    await writeFile(join(dir, 'photo.png'), await greyPng());
  });

  it('reads the Series Instance UID from each header', async () => {
    expect((await readDicomFile(join(dir, 'chest-2.dcm'))).header).toMatchObject({ seriesInstanceUid: series.chest, studyInstanceUid: study });
  });

  it('gives every instance of a labelled series its label, rejects instances of other series, and lists rows no file matched', async () => {
    const csv = join(root, 'by-series.csv');
    const absent = syntheticUid('layouts', 'absent');
    await writeFile(csv, `series_instance_uid,label\n${series.chest},lesion\n${series.abdomen},normal\n${absent},lesion\n`);
    const options = { dir, labelsCsv: csv, inputSize: 8, channels: 1 as const, classNames: ['normal', 'lesion'] };
    const loaded = await loadLabeledDataset(options);
    expect(loaded.files).toEqual(['abdomen-1.dcm', 'abdomen-2.dcm', 'chest-1.dcm', 'chest-2.dcm', 'chest-3.dcm']);
    expect(Array.from(loaded.images.labels)).toEqual([0, 0, 1, 1, 1]);
    // The same reason as an unlabelled instance or study gets.
    expect(reasons(loaded.rejected)).toEqual({ 'scout-1.dcm': 'missing-label', 'photo.png': 'missing-label', 'by-series.csv:4': 'missing-file' });
    expect(loaded.rejected.find((r) => r.file === 'scout-1.dcm')?.message).toBe(
      `scout-1.dcm: its Series Instance UID (0020,000E) ${series.scout} has no row in ${csv}`,
    );
    expect(loaded.rejected.find((r) => r.file === 'by-series.csv:4')?.message).toMatch(/no decodable file has Series Instance UID \(0020,000E\)/);
    // All series are one patient's study, so the split keeps them in one group.
    expect(new Set(loaded.images.groups).size).toBe(1);

    // A cache hit labels from the identity stored with the tensor: the series UID must be in it.
    const cached = { ...options, cacheDir: join(root, 'series-cache') };
    await loadLabeledDataset(cached);
    const again = await loadLabeledDataset(cached);
    expect(again.cache.hits).toBe(5);
    expect(again.files).toEqual(loaded.files);
    expect(Array.from(again.images.labels)).toEqual([0, 0, 1, 1, 1]);

    const report = await scanDataset({ dir, labelsCsv: csv });
    expect(report.labelledBy).toBe('series_instance_uid');
    expect(report.byClass).toEqual({ normal: 2, lesion: 3 });
    expect(reasons(report.rejected)).toEqual(reasons(loaded.rejected));
  });
});
