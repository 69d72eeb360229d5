import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLabeledDataset } from '../data/dataset/load.js';
import { readDicomFile } from '../data/dicom/reader.js';
import { CLASS_NAMES, generateConsortium, IMAGES_PER_PATIENT, type ConsortiumSummary } from './consortium.js';
import { BASE_PROFILES, hospitalProfiles } from './profiles.js';

const INPUT = 48;
let root: string;
let summary: ConsortiumSummary;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'federa-sim-'));
  summary = await generateConsortium({ outDir: join(root, 'a'), sites: 4, imagesPerSite: 40, holdoutImages: 30, seed: 7 });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Mean over a square patch of an HxW image. */
function patchMean(img: Float32Array, size: number, cx: number, cy: number, half: number): number {
  let sum = 0;
  let n = 0;
  for (let y = cy - half; y < cy + half; y++) for (let x = cx - half; x < cx + half; x++) {
    sum += img[y * size + x] ?? 0;
    n++;
  }
  return sum / n;
}

describe('generateConsortium', () => {
  it('writes the documented layout and class counts that follow each profile', async () => {
    expect(summary.sites.map((s) => s.id)).toEqual(['hospital-a', 'hospital-b', 'hospital-c', 'hospital-d']);
    expect(summary.sites.map((s) => s.classCounts)).toEqual([
      { normal: 28, lesion: 12 }, // 30 % lesion
      { normal: 20, lesion: 20 }, // 50 %
      { normal: 12, lesion: 28 }, // 70 %
      { normal: 20, lesion: 20 }, // 50 %
    ]);
    expect(summary.holdout?.classCounts).toEqual({ normal: 15, lesion: 15 });
    expect(summary.holdout?.profileIds).toEqual(['hospital-a', 'hospital-b', 'hospital-c', 'hospital-d']);
    for (const set of [...summary.sites, ...(summary.holdout ? [summary.holdout] : [])]) {
      expect(set.dir).toBe(join(root, 'a', set.id));
      expect(set.labelsCsv).toBe(join(set.dir, 'labels.csv'));
      const files = await readdir(set.imagesDir);
      expect(files).toHaveLength(set.images);
      expect(files.every((f) => f.startsWith(`${set.id}-`) && f.endsWith('.dcm'))).toBe(true);
      // A SEG per image, named after it, so the set is a segmentation dataset as well.
      expect(set.masksDir).toBe(join(set.dir, 'masks'));
      expect((await readdir(set.masksDir)).sort()).toEqual(files.map((f) => f.replace(/\.dcm$/, '.seg.dcm')).sort());
      expect(set.members.map((m) => m.mask)).toEqual(set.members.map((m) => m.file.replace(/^images\/(.*)\.dcm$/, 'masks/$1.seg.dcm')));
      const csv = (await readFile(set.labelsCsv, 'utf8')).trim().split('\n');
      expect(csv[0]).toBe('file,label');
      expect(csv).toHaveLength(set.images + 1);
    }
  });

  it('lists every image with its label and source profile, as labels.csv has them; the holdout round-robin over profiles', async () => {
    for (const set of [...summary.sites, ...(summary.holdout ? [summary.holdout] : [])]) {
      const csv = (await readFile(set.labelsCsv, 'utf8')).trim().split('\n').slice(1);
      expect(set.members.map((m) => `${m.file},${m.label}`)).toEqual(csv);
      if (set.id !== 'holdout') expect(new Set(set.members.map((m) => m.profileId))).toEqual(new Set([set.id]));
    }
    expect(summary.holdout?.members.slice(0, 5).map((m) => m.profileId)).toEqual(['hospital-a', 'hospital-b', 'hospital-c', 'hospital-d', 'hospital-a']);
  });

  it('loads with loadLabeledDataset without rejections and with the same class counts', async () => {
    for (const set of [...summary.sites, ...(summary.holdout ? [summary.holdout] : [])]) {
      const loaded = await loadLabeledDataset({ dir: set.dir, labelsCsv: set.labelsCsv, inputSize: INPUT, channels: 1, classNames: [...CLASS_NAMES] });
      expect(loaded.rejected).toEqual([]);
      expect(loaded.images.count).toBe(set.images);
      expect(loaded.classCounts).toEqual(set.classCounts);
      expect(loaded.images.images).toHaveLength(set.images * INPUT * INPUT);
      // Several images per patient, as in a real archive, so the site's split has patients to keep together.
      expect(new Set(loaded.images.groups).size).toBe(Math.ceil(set.images / IMAGES_PER_PATIENT));
    }
  });

  it('stores each profile as specified (size, photometric, signedness, rescale, syntax)', async () => {
    for (const [i, set] of summary.sites.entries()) {
      const profile = BASE_PROFILES[i];
      if (profile === undefined) throw new Error('missing profile');
      const [first] = await readdir(set.imagesDir);
      const { header } = await readDicomFile(join(set.imagesDir, first ?? ''));
      expect(header).toMatchObject({
        rows: profile.imageSize,
        columns: profile.imageSize,
        photometricInterpretation: profile.photometricInterpretation,
        pixelRepresentation: profile.pixelRepresentation,
        rescaleSlope: profile.rescaleSlope,
        rescaleIntercept: profile.rescaleIntercept,
        bitsStored: 12,
        modality: profile.modality,
        // A series UID is what a PACS export labels by; each synthetic image is its own series.
        seriesInstanceUid: expect.stringMatching(/^2\.25\.[0-9]+$/) as unknown,
      });
    }
    expect(BASE_PROFILES.map((p) => p.imageSize)).toEqual([64, 72, 80, 64]);
  });

  it('gives the MONOCHROME1 site the same polarity as the others after preprocessing', async () => {
    const mono1 = summary.sites.find((s) => summary.profiles.find((p) => p.id === s.id)?.photometricInterpretation === 'MONOCHROME1');
    expect(mono1?.id).toBe('hospital-b');
    const contrastOf = new Map<string, number>();
    for (const set of summary.sites) {
      const loaded = await loadLabeledDataset({ dir: set.dir, labelsCsv: set.labelsCsv, inputSize: INPUT, channels: 1, classNames: [...CLASS_NAMES] });
      let bodyMinusAir = 0;
      for (let i = 0; i < loaded.images.count; i++) {
        const img = loaded.images.images.subarray(i * INPUT * INPUT, (i + 1) * INPUT * INPUT);
        bodyMinusAir += patchMean(img, INPUT, INPUT / 2, INPUT / 2, 4) - patchMean(img, INPUT, 3, 3, 3);
      }
      // Body brighter than air by a wide margin at every site, MONOCHROME1 included.
      expect(bodyMinusAir / loaded.images.count, set.id).toBeGreaterThan(0.2);
      contrastOf.set(set.id, bodyMinusAir / loaded.images.count);
    }
    // The default preprocessing keeps each scanner's contrast (that is the shift the sites differ by): the
    // low-contrast scanner at hospital-d shows well under three quarters of hospital-a's body-to-air step.
    expect(contrastOf.get('hospital-d')).toBeLessThan(0.75 * (contrastOf.get('hospital-a') ?? 0));
    // And the MONOCHROME1 files really are stored inverted (so the check above is not vacuous).
    const [first] = await readdir(mono1?.imagesDir ?? '');
    const raw = await readDicomFile(join(mono1?.imagesDir ?? '', first ?? ''));
    const size = raw.header.columns;
    const centre = raw.pixels[(size / 2) * size + size / 2] ?? NaN;
    expect(centre).toBeLessThan(raw.pixels[0] ?? NaN);
  });

  it('is deterministic in the seed and refuses to overwrite without permission', async () => {
    const again = await generateConsortium({ outDir: join(root, 'b'), sites: 3, imagesPerSite: 40, holdoutImages: 30, seed: 7 });
    const other = await generateConsortium({ outDir: join(root, 'c'), sites: 3, imagesPerSite: 40, holdoutImages: 30, seed: 8 });
    const digest = async (dir: string) => createHash('sha256').update(await readFile(join(dir, 'images', 'hospital-b-0007.dcm'))).digest('hex');
    const csv = (dir: string) => readFile(join(dir, 'labels.csv'), 'utf8');
    expect(await digest(again.sites[1]?.dir ?? '')).toBe(await digest(summary.sites[1]?.dir ?? ''));
    expect(await csv(again.sites[2]?.dir ?? '')).toBe(await csv(summary.sites[2]?.dir ?? ''));
    expect(await digest(other.sites[1]?.dir ?? '')).not.toBe(await digest(summary.sites[1]?.dir ?? ''));
    const seg = (dir: string) => readFile(join(dir, 'masks', 'hospital-b-0007.seg.dcm'));
    expect(await seg(again.sites[1]?.dir ?? '')).toEqual(await seg(summary.sites[1]?.dir ?? ''));

    await expect(generateConsortium({ outDir: join(root, 'b'), sites: 1, imagesPerSite: 5, holdoutImages: 0, seed: 7 })).rejects.toThrow(/not empty/);
    const replaced = await generateConsortium({ outDir: join(root, 'b'), sites: 1, imagesPerSite: 5, holdoutImages: 0, seed: 7, overwrite: true });
    expect(await readdir(replaced.sites[0]?.imagesDir ?? '')).toHaveLength(5);
    expect(replaced.holdout).toBeUndefined();
  });

  it('validates its options', async () => {
    await expect(generateConsortium({ outDir: join(root, 'd'), sites: 0, imagesPerSite: 5, holdoutImages: 0, seed: 1 })).rejects.toThrow(/sites/);
    await expect(generateConsortium({ outDir: join(root, 'd'), sites: 27, imagesPerSite: 5, holdoutImages: 0, seed: 1 })).rejects.toThrow(/sites/);
    await expect(generateConsortium({ outDir: join(root, 'd'), sites: 1, imagesPerSite: 1.5, holdoutImages: 0, seed: 1 })).rejects.toThrow(/imagesPerSite/);
  });
});

describe('hospitalProfiles', () => {
  it('extends past the four base hospitals with varied, valid profiles', () => {
    const profiles = hospitalProfiles(8, 3);
    expect(profiles.map((p) => p.id)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((l) => `hospital-${l}`));
    expect(profiles.slice(0, 4)).toEqual(BASE_PROFILES);
    for (const p of profiles.slice(4)) {
      expect([64, 72, 80]).toContain(p.imageSize);
      expect([0.3, 0.5, 0.7]).toContain(p.lesionFraction);
      expect(p.noiseSigma).toBeGreaterThan(0);
      expect(p.institutionName).toMatch(/synthetic/);
    }
    expect(hospitalProfiles(8, 3)).toEqual(profiles);
  });
});
