import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { mapWithConcurrency } from '../data/dataset/concurrency.js';
import { writeLesionSegmentation, type LesionSegSource } from './lesion-seg.js';
import { checkLesionAppearance, generatePhantom, type LesionPlacement } from './phantom.js';
import { hospitalProfiles, MAX_SITES, type HospitalProfile } from './profiles.js';
import { createRng, shuffle, syntheticUid } from './rng.js';
import { writeDicomPart10 } from './writer.js';

/** Class names in label-index order: 0 = normal, 1 = lesion. */
export const CLASS_NAMES = ['normal', 'lesion'] as const;
export type ClassName = (typeof CLASS_NAMES)[number];

export const HOLDOUT_ID = 'holdout';
/** Holdout prevalence: balanced, so accuracy on it is not dominated by one class. */
export const HOLDOUT_LESION_FRACTION = 0.5;

export interface GenerateConsortiumOptions {
  outDir: string;
  sites: number;
  imagesPerSite: number;
  holdoutImages: number;
  seed: number;
  /** Replace existing site/holdout folders; otherwise a non-empty one is an error. */
  overwrite?: boolean;
}

export interface GeneratedSet {
  /** hospital-a, ... or 'holdout'. */
  id: string;
  dir: string;
  imagesDir: string;
  /** One DICOM SEG per image (`<image name>.seg.dcm`): the lesion disc, or an empty mask for a normal image. */
  masksDir: string;
  labelsCsv: string;
  images: number;
  classCounts: Record<ClassName, number>;
  /** Profiles the images were drawn from (one for a site, all of them for the holdout). */
  profileIds: string[];
  /** Every image: its file (relative to dir, as in labels.csv), its SEG (relative to dir), label and the profile it was drawn from. */
  members: Array<{ file: string; mask: string; label: ClassName; profileId: string }>;
}

export interface ConsortiumSummary {
  outDir: string;
  seed: number;
  classNames: readonly ClassName[];
  profiles: HospitalProfile[];
  sites: GeneratedSet[];
  /** Undefined when holdoutImages is 0. */
  holdout: GeneratedSet | undefined;
}

/**
 * Consecutive images of a set belong to one patient, this many at a time (each its own study, like follow-up
 * visits), so a site's split has to keep a patient's images together as it must with real archives.
 */
export const IMAGES_PER_PATIENT = 3;

export interface SynthesizedImage {
  bytes: Uint8Array;
  label: ClassName;
  /** Where the lesion was drawn, in pixels (undefined for a normal image). */
  lesion: LesionPlacement | undefined;
  /** What a SEG of this image needs to reference it (see writeLesionSegmentation). */
  source: LesionSegSource;
}

/**
 * Maps a phantom through a hospital's "scanner": contrast, offset and noise in display units, then to modality
 * values over the profile's window and to stored values via rescale. MONOCHROME1 sites store the inverse, so
 * a correct reader (which inverts MONOCHROME1) recovers the same polarity as everyone else.
 */
export function synthesizeImage(profile: HospitalProfile, setId: string, index: number, lesion: boolean, seed: number): SynthesizedImage {
  const rng = createRng(seed, setId, index);
  const size = profile.imageSize;
  const phantom = generatePhantom({ size, lesion: lesion ? profile.lesionAppearance : undefined }, rng);
  const [low, high] = profile.valueRange;
  const signed = profile.pixelRepresentation === 1;
  const minStored = signed ? -(2 ** (profile.bitsStored - 1)) : 0;
  const maxStored = signed ? 2 ** (profile.bitsStored - 1) - 1 : 2 ** profile.bitsStored - 1;
  const pixels = signed ? new Int16Array(size * size) : new Uint16Array(size * size);
  const tissue = 0.42;
  for (let i = 0; i < pixels.length; i++) {
    const d = profile.brightness + tissue + profile.contrast * ((phantom.intensity[i] ?? 0) - tissue) + profile.noiseSigma * rng.normal();
    const shown = profile.photometricInterpretation === 'MONOCHROME1' ? 1 - d : d;
    const value = low + shown * (high - low);
    const stored = Math.round((value - profile.rescaleIntercept) / profile.rescaleSlope);
    pixels[i] = Math.min(maxStored, Math.max(minStored, stored));
  }
  const number = String(index + 1).padStart(4, '0');
  const patient = String(Math.floor(index / IMAGES_PER_PATIENT) + 1).padStart(4, '0');
  const source: LesionSegSource = {
    sopClass: profile.sopClass,
    sopInstanceUid: syntheticUid(seed, setId, index, 'instance'),
    studyInstanceUid: syntheticUid(seed, setId, index, 'study'),
    seriesInstanceUid: syntheticUid(seed, setId, index, 'series'),
    patientName: `SIMULATED^${setId.toUpperCase()}^${patient}`,
    patientId: `SIM-${setId.toUpperCase()}-${patient}`,
    studyDate: '20000101',
    studyId: `SIM${number}`,
    rows: size,
    columns: size,
  };
  const bytes = writeDicomPart10({
    ...source,
    transferSyntax: profile.transferSyntax,
    seriesNumber: 1,
    instanceNumber: 1,
    modality: profile.modality,
    institutionName: profile.institutionName,
    photometricInterpretation: profile.photometricInterpretation,
    bitsStored: profile.bitsStored,
    pixelRepresentation: profile.pixelRepresentation,
    rescaleSlope: profile.rescaleSlope,
    rescaleIntercept: profile.rescaleIntercept,
    windowCenter: (low + high) / 2,
    windowWidth: high - low,
    pixels,
  });
  return { bytes, label: lesion ? 'lesion' : 'normal', lesion: phantom.lesion, source };
}

/** Exactly round(fraction * count) lesions, in seeded random order (exact counts make tests and reports exact). */
function labelPlan(count: number, fraction: number, seed: number, setId: string): boolean[] {
  const lesions = Math.round(fraction * count);
  const plan = Array.from({ length: count }, (_, i) => i < lesions);
  return shuffle(plan, createRng(seed, setId, 'labels'));
}

async function prepareDir(dir: string, overwrite: boolean): Promise<void> {
  const existing = await readdir(dir).catch((error: unknown) => {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return [];
    throw error;
  });
  if (existing.length > 0) {
    if (!overwrite) throw new Error(`${dir} already exists and is not empty; use overwrite (--force) to replace it`);
    await rm(dir, { recursive: true, force: true });
  }
  await mkdir(join(dir, 'images'), { recursive: true });
  await mkdir(join(dir, 'masks'), { recursive: true });
}

async function writeSet(
  outDir: string,
  id: string,
  plan: Array<{ profile: HospitalProfile; lesion: boolean }>,
  seed: number,
  overwrite: boolean,
): Promise<GeneratedSet> {
  const dir = join(outDir, id);
  await prepareDir(dir, overwrite);
  const classCounts: Record<ClassName, number> = { normal: 0, lesion: 0 };
  const rows = await mapWithConcurrency(plan, 8, async ({ profile, lesion }, index) => {
    const image = synthesizeImage(profile, id, index, lesion, seed);
    const name = `${id}-${String(index + 1).padStart(4, '0')}`;
    const file = `images/${name}.dcm`;
    const mask = `masks/${name}.seg.dcm`;
    await writeFile(join(dir, file), image.bytes);
    await writeFile(join(dir, mask), writeLesionSegmentation(image.source, image.lesion));
    return { file, mask, label: image.label, profileId: profile.id };
  });
  for (const row of rows) classCounts[row.label]++;
  const labelsCsv = join(dir, 'labels.csv');
  await writeFile(labelsCsv, ['file,label', ...rows.map((r) => `${r.file},${r.label}`)].join('\n') + '\n');
  return {
    id,
    dir,
    imagesDir: join(dir, 'images'),
    masksDir: join(dir, 'masks'),
    labelsCsv,
    images: rows.length,
    classCounts,
    profileIds: [...new Set(plan.map((p) => p.profile.id))],
    members: rows,
  };
}

/**
 * Writes a synthetic consortium: outDir/<site-id>/{images/*.dcm, masks/*.seg.dcm, labels.csv} per hospital (a
 * lesion SEG per image, so each set is a classification and a segmentation dataset) and the same layout
 * under outDir/holdout with images drawn round-robin from every hospital profile (so its lesions span every
 * hospital's case mix). Deterministic in `seed`.
 */
export async function generateConsortium(options: GenerateConsortiumOptions): Promise<ConsortiumSummary> {
  const { sites, imagesPerSite, holdoutImages, seed } = options;
  if (!Number.isInteger(sites) || sites < 1 || sites > MAX_SITES) throw new RangeError(`sites must be 1..${MAX_SITES}, got ${sites}`);
  if (!Number.isInteger(imagesPerSite) || imagesPerSite < 1) throw new RangeError(`imagesPerSite must be a positive integer, got ${imagesPerSite}`);
  if (!Number.isInteger(holdoutImages) || holdoutImages < 0) throw new RangeError(`holdoutImages must be a non-negative integer, got ${holdoutImages}`);
  if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  const outDir = resolve(options.outDir);
  const overwrite = options.overwrite ?? false;
  const profiles = hospitalProfiles(sites, seed);
  for (const profile of profiles) checkLesionAppearance(profile.lesionAppearance, `profile ${profile.id}`);

  const siteSets: GeneratedSet[] = [];
  for (const profile of profiles) {
    const lesions = labelPlan(imagesPerSite, profile.lesionFraction, seed, profile.id);
    siteSets.push(await writeSet(outDir, profile.id, lesions.map((lesion) => ({ profile, lesion })), seed, overwrite));
  }

  let holdout: GeneratedSet | undefined;
  if (holdoutImages > 0) {
    const lesions = labelPlan(holdoutImages, HOLDOUT_LESION_FRACTION, seed, HOLDOUT_ID);
    const plan = lesions.map((lesion, i) => ({ profile: profiles[i % profiles.length] as HospitalProfile, lesion }));
    holdout = await writeSet(outDir, HOLDOUT_ID, plan, seed, overwrite);
  }
  return { outDir, seed, classNames: CLASS_NAMES, profiles, sites: siteSets, holdout };
}
