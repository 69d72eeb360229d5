import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitTrainValidation } from '../../agent/split.js';
import { writeDicomPart10, type SyntheticImageSpec } from '../../sim/writer.js';
import { loadLabeledDataset, type LoadLabeledDatasetOptions } from './load.js';

interface Planned {
  file: string;
  patientId: string;
  study: string;
}

/** Who each file belongs to. '' is an empty Patient ID, which real exports write when they have none. */
const PLAN: Planned[] = [
  { file: 'normal/a1.dcm', patientId: 'MRN-0001', study: '2.25.11' },
  { file: 'normal/a2.dcm', patientId: 'MRN-0001', study: '2.25.11' },
  { file: 'lesion/a3.dcm', patientId: 'MRN-0001', study: '2.25.12' },
  // No Patient ID, but in patient 1's second study: it must go where patient 1 goes.
  { file: 'lesion/a4.dcm', patientId: '', study: '2.25.12' },
  { file: 'normal/b1.dcm', patientId: 'MRN-0002', study: '2.25.21' },
  { file: 'lesion/b2.dcm', patientId: 'MRN-0002', study: '2.25.22' },
  // No Patient ID: grouped by study.
  { file: 'normal/x1.dcm', patientId: '', study: '2.25.91' },
  { file: 'lesion/x2.dcm', patientId: '', study: '2.25.91' },
  { file: 'normal/y1.dcm', patientId: '', study: '2.25.92' },
  ...Array.from({ length: 12 }, (_, i): Planned => ({
    file: `${i % 2 === 0 ? 'normal' : 'lesion'}/p${String(i).padStart(2, '0')}.dcm`,
    patientId: `MRN-1${String(Math.floor(i / 3)).padStart(3, '0')}`,
    study: `2.25.3${i}`,
  })),
];

function spec(planned: Planned, index: number): SyntheticImageSpec {
  return {
    sopClass: 'secondary-capture',
    transferSyntax: index % 2 === 0 ? 'explicit-vr-little-endian' : 'implicit-vr-little-endian',
    sopInstanceUid: `2.25.7${index}`,
    studyInstanceUid: planned.study,
    seriesInstanceUid: `${planned.study}.1`,
    patientName: 'SIMULATED^PATIENT',
    patientId: planned.patientId,
    studyDate: '20000101',
    studyId: 'S1',
    seriesNumber: 1,
    instanceNumber: index + 1,
    modality: 'OT',
    institutionName: 'Simulated Hospital (synthetic)',
    rows: 8,
    columns: 8,
    photometricInterpretation: 'MONOCHROME2',
    bitsStored: 12,
    pixelRepresentation: 0,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windowCenter: 2048,
    windowWidth: 4096,
    pixels: Uint16Array.from({ length: 64 }, (_, i) => (i * 61 + index * 97) % 4096),
  };
}

const png = (shade: number): Promise<Buffer> =>
  sharp(new Uint8Array(64).fill(shade), { raw: { width: 8, height: 8, channels: 1 } }).toColourspace('b-w').png().toBuffer();

let root: string;
let options: LoadLabeledDatasetOptions;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'federa-groups-'));
  const dir = join(root, 'data');
  for (const folder of ['normal', 'lesion']) await mkdir(join(dir, folder), { recursive: true });
  for (const [i, planned] of PLAN.entries()) await writeFile(join(dir, planned.file), writeDicomPart10(spec(planned, i)));
  // Neither a Patient ID nor a study: each PNG stands alone.
  await writeFile(join(dir, 'normal/photo1.png'), await png(40));
  await writeFile(join(dir, 'lesion/photo2.png'), await png(200));
  options = { dir, inputSize: 8, channels: 1, classNames: ['normal', 'lesion'], cacheDir: join(root, 'cache') };
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('loadLabeledDataset patient groups', () => {
  it('groups images by Patient ID, then by study, and leaves the rest alone', async () => {
    const loaded = await loadLabeledDataset(options);
    expect(loaded.rejected).toEqual([]);
    expect(loaded.images.groups).toHaveLength(loaded.images.count);
    const group = (file: string): number => loaded.images.groups[loaded.files.indexOf(file)] as number;
    expect(new Set(['normal/a1.dcm', 'normal/a2.dcm', 'lesion/a3.dcm', 'lesion/a4.dcm'].map(group)).size).toBe(1);
    expect(group('normal/b1.dcm')).toBe(group('lesion/b2.dcm'));
    expect(group('normal/x1.dcm')).toBe(group('lesion/x2.dcm'));
    const distinct = ['normal/a1.dcm', 'normal/b1.dcm', 'normal/x1.dcm', 'normal/y1.dcm', 'normal/photo1.png', 'lesion/photo2.png'].map(group);
    expect(new Set(distinct).size).toBe(distinct.length);
    // 2 patients, 4 in the p files, 2 studies without a patient, 2 PNGs.
    expect(new Set(loaded.images.groups).size).toBe(10);
  });

  it('gives the same groups from the tensor cache, which holds a pseudonym and never the Patient ID', async () => {
    const first = await loadLabeledDataset(options);
    const second = await loadLabeledDataset(options);
    expect(second.cache.hits).toBe(second.images.count);
    expect(second.files).toEqual(first.files);
    expect(Array.from(second.images.groups)).toEqual(Array.from(first.images.groups));
    const entries: string[] = [];
    const walk = async (folder: string): Promise<void> => {
      for (const entry of await readdir(folder, { withFileTypes: true })) {
        if (entry.isDirectory()) await walk(join(folder, entry.name));
        else entries.push(join(folder, entry.name));
      }
    };
    await walk(join(root, 'cache'));
    expect(entries.length).toBe(first.images.count);
    for (const entry of entries) expect((await readFile(entry)).includes('MRN-')).toBe(false);
  });

  it('keeps every patient on one side of the split, whatever the seed', async () => {
    const loaded = await loadLabeledDataset(options);
    // a4 has no Patient ID but is in patient 1's study; the others without one are their study.
    const patientOf = new Map(PLAN.map((p) => [p.file, p.file === 'lesion/a4.dcm' ? 'MRN-0001' : p.patientId || p.study]));
    for (let seed = 0; seed < 20; seed++) {
      const { train, validation } = splitTrainValidation(loaded.images, 0.3, seed);
      expect(train.count + validation.count).toBe(loaded.images.count);
      const held = new Set(validation.groups);
      expect(Array.from(train.groups).filter((g) => held.has(g))).toEqual([]);
      const sides = new Map<string, Set<boolean>>();
      loaded.files.forEach((file, i) => {
        const patient = patientOf.get(file) ?? file;
        sides.set(patient, (sides.get(patient) ?? new Set()).add(held.has(loaded.images.groups[i] as number)));
      });
      expect([...sides].filter(([, s]) => s.size > 1).map(([patient]) => `${patient} (seed ${seed})`)).toEqual([]);
      expect(validation.count).toBeGreaterThan(0);
    }
  });
});
