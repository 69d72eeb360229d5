import dicomParser from 'dicom-parser';
import { describe, expect, it } from 'vitest';
import { readImageGeometry } from '../data/masks/geometry.js';
import { matchMasks } from '../data/masks/match.js';
import { readDicomSeg } from '../data/masks/dicom-seg.js';
import { synthesizeImage } from './consortium.js';
import { LESION_SEGMENT, lesionMask, writeLesionSegmentation } from './lesion-seg.js';
import { BASE_PROFILES, type HospitalProfile } from './profiles.js';

const profile = (sopClass: HospitalProfile['sopClass']): HospitalProfile => {
  const found = BASE_PROFILES.find((p) => p.sopClass === sopClass);
  if (found === undefined) throw new Error(`no ${sopClass} profile`);
  return found;
};

describe('lesionMask', () => {
  it('marks the pixels whose centre is within the radius of the lesion centre', () => {
    const mask = lesionMask(12, 16, { x: 5.3, y: 6.6, radius: 2.5, contrast: 0.3 });
    for (let y = 0; y < 12; y++) for (let x = 0; x < 16; x++) expect(mask[y * 16 + x], `${x},${y}`).toBe((x - 5.3) ** 2 + (y - 6.6) ** 2 <= 2.5 ** 2 ? 1 : 0);
    expect(mask.reduce((n, v) => n + v, 0)).toBeGreaterThan(Math.PI * 2.5 ** 2 - 5);
  });

  it('is all background without a lesion, and clips a disc at the image edge', () => {
    expect(lesionMask(4, 4, undefined).every((v) => v === 0)).toBe(true);
    const edge = lesionMask(8, 8, { x: 0, y: 0, radius: 2, contrast: 1 });
    expect(edge.reduce((n, v) => n + v, 0)).toBe(6); // (0,0) (1,0) (2,0) (0,1) (1,1) (0,2)
  });
});

describe('writeLesionSegmentation', () => {
  it('writes the lesion disc for the image it names, in the image’s study and frame of reference', () => {
    const image = synthesizeImage(profile('ct'), 'hospital-a', 4, true, 9);
    if (image.lesion === undefined) throw new Error('no lesion drawn');
    const bytes = writeLesionSegmentation(image.source, image.lesion);
    const seg = readDicomSeg(bytes, { file: 'a.seg.dcm' });
    expect(seg.segments.map((s) => s.label)).toEqual([LESION_SEGMENT]);
    const size = profile('ct').imageSize;
    expect(seg.masks.get(image.source.sopInstanceUid)).toEqual({ rows: size, columns: size, labels: lesionMask(size, size, image.lesion) });
    const ds = dicomParser.parseDicom(bytes);
    expect(ds.string('x0020000d')).toBe(image.source.studyInstanceUid);
    expect(ds.string('x00100020')).toBe(image.source.patientId);
    expect(ds.string('x00200052')).toBe(readImageGeometry(image.bytes).geometry.frameOfReferenceUid);
  });

  it('gives a normal image an empty frame that still names it, so matchMasks pairs it with an all-background mask', () => {
    const image = synthesizeImage(profile('secondary-capture'), 'hospital-b', 2, false, 9);
    expect(image.lesion).toBeUndefined();
    const bytes = writeLesionSegmentation(image.source, undefined);
    const seg = readDicomSeg(bytes, { file: 'b.seg.dcm' });
    const size = profile('secondary-capture').imageSize;
    const match = matchMasks([{ sopInstanceUid: image.source.sopInstanceUid, rows: size, columns: size }], seg);
    expect(match.imagesWithoutMask).toEqual([]);
    expect(match.pairs).toHaveLength(1);
    expect(match.pairs[0]?.mask.labels.every((v) => v === 0)).toBe(true);
    // Secondary Capture has no patient geometry, so neither has its SEG.
    expect(dicomParser.parseDicom(bytes).string('x00200052')).toBeUndefined();
  });

  it('is deterministic: the same image gives the same SEG', () => {
    const image = synthesizeImage(profile('mr'), 'hospital-c', 1, true, 4);
    expect(writeLesionSegmentation(image.source, image.lesion)).toEqual(writeLesionSegmentation(image.source, image.lesion));
  });
});
