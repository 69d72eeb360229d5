import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetSummarySchema } from '@federa/shared';
import { writeDicomPart10, type SyntheticImageSpec } from '../../sim/writer.js';
import { loadLabeledDataset, type LoadedDataset } from '../dataset/load.js';
import { summariseLoadedDataset } from './summary.js';

/** Everything identifying the test data carries: none of it may appear in what leaves the site. */
const IDENTIFYING = {
  patients: ['DOE^JOHN', 'ROE^JANE', 'MUSTERMANN^ERIKA'],
  patientIds: ['MRN-4711-0815', 'MRN-2024-9999', 'MRN-1957-0302'],
  institution: 'St. Example General Hospital',
  uids: ['2.25.90210001', '2.25.90210002', '2.25.90210003', '2.25.80210001', '2.25.70210001'],
};

function dicom(i: number, modality: string, size: number, overrides: Partial<SyntheticImageSpec> = {}): Uint8Array {
  const pixels = new Uint16Array(size * size);
  for (let p = 0; p < pixels.length; p++) pixels[p] = (p * 37 + i * 101) % 4096;
  return writeDicomPart10({
    sopClass: modality === 'MR' ? 'mr' : 'ct',
    transferSyntax: i % 2 === 0 ? 'explicit-vr-little-endian' : 'implicit-vr-little-endian',
    sopInstanceUid: IDENTIFYING.uids[i]!,
    studyInstanceUid: IDENTIFYING.uids[3]!,
    seriesInstanceUid: IDENTIFYING.uids[4]!,
    patientName: IDENTIFYING.patients[i]!,
    patientId: IDENTIFYING.patientIds[i]!,
    studyDate: '19570302',
    studyId: 'S4711',
    seriesNumber: 1,
    instanceNumber: i + 1,
    modality,
    institutionName: IDENTIFYING.institution,
    rows: size,
    columns: size,
    photometricInterpretation: 'MONOCHROME2',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: 2048,
    windowWidth: 4096,
    pixels,
    ...overrides,
  });
}

describe('the dataset summary a site reports', () => {
  let dir: string;
  let loaded: LoadedDataset;
  // Files named the way exports from real archives often are: after the patient.
  const files = {
    ct: 'DOE_JOHN_MRN-4711-0815/CT_19570302.dcm',
    mr: 'ROE_JANE_MRN-2024-9999/MR_head.dcm',
    big: 'MUSTERMANN_ERIKA_MRN-1957-0302/CT_big.dcm',
    png: 'photos/DOE_JOHN_wound.png',
    truncated: 'DOE_JOHN_MRN-4711-0815/CT_cut.dcm',
    unlabelled: 'ROE_JANE_MRN-2024-9999/extra.dcm',
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-summary-'));
    const write = async (file: string, bytes: Uint8Array): Promise<void> => {
      await mkdir(join(dir, file, '..'), { recursive: true });
      await writeFile(join(dir, file), bytes);
    };
    await write(files.ct, dicom(0, 'CT', 64));
    await write(files.mr, dicom(1, 'MR', 200));
    await write(files.big, dicom(2, 'CT', 600));
    await write(files.png, await sharp({ create: { width: 300, height: 90, channels: 3, background: { r: 90, g: 20, b: 20 } } }).png().toBuffer());
    const cut = dicom(0, 'CT', 64);
    await write(files.truncated, cut.subarray(0, cut.length - 300));
    await write(files.unlabelled, dicom(1, 'MR', 32));
    const labels = [files.ct, files.mr, files.big, files.png, files.truncated].map((f, i) => `${f},${i % 2 === 0 ? 'lesion' : 'normal'}`);
    await writeFile(join(dir, 'labels.csv'), ['file,label', ...labels, 'GONE_PATIENT_MRN-0000-0001.dcm,normal'].join('\n') + '\n');
    loaded = await loadLabeledDataset({ dir, labelsCsv: join(dir, 'labels.csv'), inputSize: 32, channels: 1, classNames: ['normal', 'lesion'] });
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('counts by class, modality, transfer syntax, size bucket and rejection reason', async () => {
    expect(loaded.files).toHaveLength(4);
    const summary = await summariseLoadedDataset(dir, loaded);
    expect(summary).toEqual({
      files: 7,
      accepted: 4,
      byClass: { normal: 2, lesion: 2 },
      byModality: { CT: 2, MR: 1, '(none)': 1 },
      byTransferSyntax: { '1.2.840.10008.1.2.1': 2, '1.2.840.10008.1.2': 1, PNG: 1 },
      bySize: { '<=128': 1, '129-256': 1, '513-1024': 1, '257-512': 1 },
      rejectedByReason: { truncated: 1, 'missing-label': 1, 'missing-file': 1 },
    });
    // It is exactly what the coordinator accepts.
    expect(datasetSummarySchema.parse(summary)).toEqual(summary);
  });

  it('carries no file name, no folder, no identifier and no other header value', async () => {
    const wire = JSON.stringify(await summariseLoadedDataset(dir, loaded));
    const names = [...Object.values(files), 'GONE_PATIENT_MRN-0000-0001.dcm'];
    const fragments = [
      dir,
      ...names,
      ...names.flatMap((f) => f.split(/[/.]/)).filter((part) => part.length > 3 && part !== 'dcm'),
      ...IDENTIFYING.patients,
      ...IDENTIFYING.patients.flatMap((p) => p.split('^')),
      ...IDENTIFYING.patientIds,
      IDENTIFYING.institution,
      ...IDENTIFYING.uids,
      '19570302',
      'S4711',
      '600x600',
      '200x200',
    ];
    for (const fragment of fragments) expect(wire, fragment).not.toContain(fragment);
    // The loader itself knows the files, so the test would notice if the summary were built from the wrong thing.
    expect(JSON.stringify(loaded.rejected)).toContain('CT_cut.dcm');
  });

  it('maps a modality outside the standard and a private transfer syntax to fixed categories', async () => {
    const odd = join(dir, 'odd');
    await mkdir(odd);
    await writeFile(join(odd, 'a.dcm'), dicom(0, 'PATIENTNAME', 16));
    const oddLoaded = { files: ['a.dcm'], classCounts: { normal: 1, lesion: 0 }, rejected: [] };
    const summary = await summariseLoadedDataset(odd, oddLoaded);
    expect(summary.byModality).toEqual({ other: 1 });
    expect(JSON.stringify(summary)).not.toContain('PATIENTNAME');
  });

  it('refuses to summarise a dataset whose files changed since they were loaded', async () => {
    await expect(summariseLoadedDataset(dir, { ...loaded, files: [...loaded.files, 'vanished.dcm'] })).rejects.toThrow();
  });
});
