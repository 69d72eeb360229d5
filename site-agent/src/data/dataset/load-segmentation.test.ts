import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLASS_NAMES, generateConsortium, synthesizeImage, type ConsortiumSummary, type GeneratedSet } from '../../sim/consortium.js';
import { LESION_SEGMENT } from '../../sim/lesion-seg.js';
import { readMaskFile } from '../masks/read-mask.js';
import { loadLabeledDataset } from './load.js';
import { loadSegmentationDataset, SEGMENTATION_IMAGE_CLASSES } from './load-segmentation.js';

const INPUT = 48;
const SEED = 17;
let root: string;
let summary: ConsortiumSummary;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'federa-seg-load-'));
  summary = await generateConsortium({ outDir: join(root, 'sim'), sites: 4, imagesPerSite: 15, holdoutImages: 0, seed: SEED });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const sets = (): GeneratedSet[] => summary.sites;
const load = (set: GeneratedSet) => loadSegmentationDataset({ dir: set.dir, exclude: ['labels.csv'], inputSize: INPUT, channels: 1, segments: [LESION_SEGMENT] });

describe('loadSegmentationDataset on a generated consortium', () => {
  it('gives every image its SEG mask, non-empty exactly where the labels say lesion', async () => {
    for (const set of sets()) {
      const loaded = await load(set);
      expect(loaded.rejected, set.id).toEqual([]);
      expect(loaded.files).toEqual(set.members.map((m) => m.file));
      expect(loaded.maskFiles).toEqual(set.members.map((m) => m.mask));
      const { images } = loaded;
      expect(images).toMatchObject({ count: set.images, height: INPUT, width: INPUT, channels: 1 });
      expect(images.masks).toHaveLength(set.images * INPUT * INPUT);
      expect(images.images).toHaveLength(set.images * INPUT * INPUT);
      expect(Array.from(images.labels)).toEqual(set.members.map((m) => (m.label === 'lesion' ? 1 : 0)));
      expect(loaded.classCounts).toEqual({ [SEGMENTATION_IMAGE_CLASSES[0]]: set.classCounts.normal, [SEGMENTATION_IMAGE_CLASSES[1]]: set.classCounts.lesion });
      expect(new Set(images.masks)).toEqual(set.classCounts.lesion > 0 ? new Set([0, 1]) : new Set([0]));
      expect(loaded.pixelCounts.reduce((a, b) => a + b, 0)).toBe(images.masks.length);
      expect(new Set(images.groups).size).toBe(Math.ceil(set.images / 3));
    }
  });

  it('draws the lesion disc where the phantom put it: area about pi r^2 scaled by the resize, centred on the lesion', async () => {
    let expectedTotal = 0;
    let foundTotal = 0;
    for (const set of sets()) {
      const profile = summary.profiles.find((p) => p.id === set.id);
      if (profile === undefined) throw new Error(`no profile ${set.id}`);
      const scale = INPUT / profile.imageSize;
      const { images } = await load(set);
      set.members.forEach((member, i) => {
        const mask = images.masks.subarray(i * INPUT * INPUT, (i + 1) * INPUT * INPUT);
        const { lesion } = synthesizeImage(profile, set.id, i, member.label === 'lesion', SEED);
        if (lesion === undefined) {
          expect(mask.every((v) => v === 0), `${member.file} is normal`).toBe(true);
          return;
        }
        let area = 0;
        let [sx, sy] = [0, 0];
        mask.forEach((v, p) => {
          if (v === 0) return;
          area++;
          sx += p % INPUT;
          sy += Math.floor(p / INPUT);
        });
        const r = lesion.radius * scale;
        // Pixel counting and nearest-neighbour sampling move the rim by a fraction of a pixel: a band along the circumference.
        expect(Math.abs(area - Math.PI * r * r), `${member.file}: area ${area}, r ${r.toFixed(2)}`).toBeLessThanOrEqual(0.3 * 2 * Math.PI * r + 2);
        // Output pixel j samples source (j + 0.5) / scale - 0.5.
        expect(Math.abs((sx / area + 0.5) / scale - 0.5 - lesion.x), `${member.file} centre x`).toBeLessThan(1);
        expect(Math.abs((sy / area + 0.5) / scale - 0.5 - lesion.y), `${member.file} centre y`).toBeLessThan(1);
        expectedTotal += Math.PI * r * r;
        foundTotal += area;
      });
    }
    expect(foundTotal / expectedTotal).toBeGreaterThan(0.95);
    expect(foundTotal / expectedTotal).toBeLessThan(1.05);
  });

  it('writes SEGs whose full-resolution disc is the lesion radius around its centre, and empty SEGs for normal images', async () => {
    const set = sets()[0] as GeneratedSet;
    const profile = summary.profiles[0];
    if (profile === undefined) throw new Error('no profile');
    for (const [i, member] of set.members.entries()) {
      const seg = await readMaskFile(join(set.dir, member.mask));
      expect(seg.kind).toBe('dicom-seg');
      expect(seg.segments.map((s) => s.label)).toEqual([LESION_SEGMENT]);
      const { lesion, source } = synthesizeImage(profile, set.id, i, member.label === 'lesion', SEED);
      expect([...seg.masks.keys()]).toEqual([source.sopInstanceUid]);
      const area = (seg.masks.get(source.sopInstanceUid)?.labels ?? new Uint8Array()).reduce((n, v) => n + v, 0);
      if (lesion === undefined) expect(area).toBe(0);
      else expect(Math.abs(area - Math.PI * lesion.radius ** 2)).toBeLessThanOrEqual(2 * Math.PI * lesion.radius * 0.25 + 2);
    }
  });

  it('preprocesses the images exactly as the classification loader does', async () => {
    const set = sets()[1] as GeneratedSet;
    const segmentation = await load(set);
    const classification = await loadLabeledDataset({ dir: set.dir, labelsCsv: set.labelsCsv, inputSize: INPUT, channels: 1, classNames: [...CLASS_NAMES] });
    expect(segmentation.files).toEqual(classification.files);
    expect(segmentation.images.images).toEqual(classification.images.images);
    expect(segmentation.images.groups).toEqual(classification.images.groups);
  });
});

describe('loadLabeledDataset with masks among the images', () => {
  it('sets the generated SEGs aside: no rejections, the same images and class counts', async () => {
    for (const set of sets()) {
      const loaded = await loadLabeledDataset({ dir: set.dir, labelsCsv: set.labelsCsv, inputSize: INPUT, channels: 1, classNames: [...CLASS_NAMES] });
      expect(loaded.rejected).toEqual([]);
      expect(loaded.setAside).toEqual(set.members.map((m) => m.mask));
      expect(loaded.files).toEqual(set.members.map((m) => m.file));
      expect(loaded.classCounts).toEqual(set.classCounts);
    }
  });

  it('sets masks aside in class folders too, labelled or not, SEG or PNG, and keeps what it rejected before', async () => {
    const set = sets()[0] as GeneratedSet;
    const dir = join(root, 'folders');
    const [first, second] = set.members;
    if (first === undefined || second === undefined) throw new Error('too few members');
    await mkdir(join(dir, 'normal'), { recursive: true });
    await mkdir(join(dir, 'lesion'), { recursive: true });
    await cp(join(set.dir, first.file), join(dir, 'normal', 'a.dcm'));
    await cp(join(set.dir, second.file), join(dir, 'lesion', 'b.dcm'));
    // A SEG inside a class folder (it would get that class), one in a folder that is no class, and a PNG pair.
    await cp(join(set.dir, first.mask), join(dir, 'normal', 'a.seg.dcm'));
    await cp(join(set.dir, second.mask), join(dir, 'lesion', 'b-seg'));
    await cp(set.masksDir, join(dir, 'masks'), { recursive: true });
    const png = await sharp(Buffer.alloc(8 * 8, 90), { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer();
    await writeFile(join(dir, 'lesion', 'photo.png'), png);
    await writeFile(join(dir, 'lesion', 'photo.mask.png'), png);
    // Still rejected as before: a stray image outside the class folders, and text.
    await cp(join(set.dir, first.file), join(dir, 'loose.dcm'));
    await writeFile(join(dir, 'normal', 'notes.txt'), 'not an image at all, just some words long enough to sniff');

    const loaded = await loadLabeledDataset({ dir, inputSize: 16, channels: 1, classNames: ['normal', 'lesion'] });
    expect(loaded.files).toEqual(['lesion/b.dcm', 'lesion/photo.png', 'normal/a.dcm']);
    expect(loaded.setAside).toEqual(['lesion/b-seg', 'lesion/photo.mask.png', ...set.members.map((m) => m.mask), 'normal/a.seg.dcm']);
    expect(loaded.rejected.map((r) => [r.file, r.reason])).toEqual([
      ['loose.dcm', 'missing-label'],
      ['normal/notes.txt', 'not-dicom'],
    ]);
    expect(loaded.classCounts).toEqual({ normal: 1, lesion: 2 });
  });

  it('reads only the head of an unlabelled file to tell a mask from a stray image', async () => {
    const set = sets()[2] as GeneratedSet;
    const bytes = await readFile(join(set.dir, set.members[0]?.mask ?? ''));
    // The SOP Class sits in the file meta header, well within the 4 KiB the loader reads.
    expect(bytes.indexOf(Buffer.from('1.2.840.10008.5.1.4.1.1.66.4'))).toBeLessThan(400);
  });
});
