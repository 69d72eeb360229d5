import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateConsortium } from '../../sim/index.js';
import { decodeAllFrames, readDicomFile } from '../dicom/reader.js';
import { inspectDicomFile, littleEndianBytes, scanDataset } from './index.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');

describe('data scan and inspect', () => {
  let dir: string;
  let site: { dir: string; labelsCsv: string; images: number };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-scan-'));
    const data = await generateConsortium({ outDir: dir, sites: 1, imagesPerSite: 12, holdoutImages: 0, seed: 5 });
    const generated = data.sites[0];
    if (!generated) throw new Error('no site generated');
    site = generated;
    // A corrupt file, an unlabelled good one, and a label row without its file.
    const first = (await readFile(generated.labelsCsv, 'utf8')).split('\n')[1]?.split(',')[0] ?? '';
    const bytes = await readFile(join(generated.dir, first));
    await writeFile(join(generated.dir, 'images', 'cut.dcm'), bytes.subarray(0, bytes.length - 500));
    await writeFile(join(generated.dir, 'images', 'unlabelled.dcm'), bytes);
    await appendFile(generated.labelsCsv, 'images/cut.dcm,lesion\nimages/gone.dcm,normal\n');
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('counts what a site has and lists every file it cannot use, with the reason', async () => {
    const progress: number[] = [];
    const report = await scanDataset({ dir: site.dir, labelsCsv: site.labelsCsv, onProgress: (done) => progress.push(done) });
    // The generator's SEG masks (one per image) are set aside, not counted as files or rejected.
    expect(report.files).toBe(14);
    expect(report.masks).toBe(12);
    expect(report.accepted).toBe(12);
    expect(Object.values(report.byClass).reduce((a, b) => a + b, 0)).toBe(12);
    expect(Object.keys(report.byTransferSyntax)).toHaveLength(1);
    expect(report.rejected.map((r) => [r.file, r.reason])).toEqual([
      ['images/cut.dcm', 'truncated'],
      ['images/gone.dcm', 'missing-file'],
      ['images/unlabelled.dcm', 'missing-label'],
    ]);
    expect(progress.at(-1)).toBe(26);
  });

  it('inspects a real file and writes its stored values as little-endian bytes', async () => {
    const out = join(dir, 'ct.raw');
    const file = join(testdata, 'CT_small.dcm');
    const result = await inspectDicomFile(file, out);
    expect(result.status).toBe('decoded');
    expect(result.header).toMatchObject({ rows: 128, columns: 128, bitsAllocated: 16, pixelRepresentation: 1, modality: 'CT' });
    const raw = await readFile(out);
    expect(raw.byteLength).toBe(128 * 128 * 2);
    const frames = decodeAllFrames(await readDicomFile(file));
    expect(raw.equals(Buffer.concat(frames.map(littleEndianBytes)))).toBe(true);
    // Stored values, signed 16-bit little endian: REFERENCE_VALUES.md gives arr[24, 36:40] = [520, 802, 930, 1008].
    const at = (row: number, col: number): number => raw.readInt16LE((row * 128 + col) * 2);
    expect([at(24, 36), at(24, 37), at(24, 38), at(24, 39)]).toEqual([520, 802, 930, 1008]);
  });

  it('writes float pixel data as little-endian floats', async () => {
    const out = join(dir, 'float.raw');
    const file = join(testdata, 'parametric_map_float.dcm');
    const result = await inspectDicomFile(file, out);
    expect(result.status).toBe('decoded');
    const raw = await readFile(out);
    const frames = decodeAllFrames(await readDicomFile(file));
    const values = frames.flatMap((f) => Array.from(f));
    expect(raw.byteLength).toBe(values.length * 4);
    values.forEach((v, i) => expect(raw.readFloatLE(i * 4)).toBe(v));
    expect(values.some((v) => !Number.isInteger(v))).toBe(true);
  });

  it('reports a rejected file instead of failing', async () => {
    const result = await inspectDicomFile(join(testdata, 'test-SR.dcm'));
    expect(result).toMatchObject({ status: 'rejected', reason: 'no-pixel-data' });
  });
});
