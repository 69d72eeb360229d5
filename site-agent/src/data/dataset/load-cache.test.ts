import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { preprocessingSchema, sha256Hex } from '@federa/shared';
import { pipelineHash } from '../preprocess/preprocess.js';
import { decodeImage } from '../preprocess/source.js';
import { loadLabeledDataset, type LoadLabeledDatasetOptions } from './load.js';
import { TensorCache } from './tensor-cache.js';

// Counts decodes through the real decoder: the cache's whole point is that a second load makes none.
vi.mock('../preprocess/source.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../preprocess/source.js')>();
  return { ...actual, decodeImage: vi.fn(actual.decodeImage) };
});
const decodes = vi.mocked(decodeImage);

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const testdata = resolve(repoRoot, '../shared/testdata/dicom');

describe('loadLabeledDataset with a tensor cache', () => {
  let root: string;
  let dir: string;
  let cacheDir: string;
  let options: LoadLabeledDatasetOptions;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'federa-load-cache-'));
    dir = join(root, 'data');
    cacheDir = join(root, 'state', 'tensor-cache');
    await mkdir(join(dir, 'normal'), { recursive: true });
    await mkdir(join(dir, 'lesion'), { recursive: true });
    await copyFile(join(testdata, 'CT_small.dcm'), join(dir, 'normal/ct.dcm'));
    await copyFile(join(testdata, 'MR_small.dcm'), join(dir, 'lesion/mr.dcm'));
    await copyFile(join(testdata, 'SC_rgb.dcm'), join(dir, 'lesion/rgb.dcm'));
    await writeFile(join(dir, 'lesion/broken.dcm'), 'not an image');
    options = { dir, inputSize: 16, channels: 1, classNames: ['normal', 'lesion'], cacheDir };
  });
  afterAll(() => rm(root, { recursive: true, force: true }));
  beforeEach(() => {
    decodes.mockClear();
  });

  it('decodes once; the second load reads the cache and yields the same tensors', async () => {
    const first = await loadLabeledDataset(options);
    expect(first.files).toEqual(['lesion/mr.dcm', 'lesion/rgb.dcm', 'normal/ct.dcm']);
    expect(decodes).toHaveBeenCalledTimes(4);
    expect(first.cache).toMatchObject({ hits: 0, misses: 4, corrupt: 0, writeErrors: 0 });

    decodes.mockClear();
    const second = await loadLabeledDataset(options);
    // Only the file that was rejected (and so never cached) is decoded again.
    expect(decodes.mock.calls.map(([, file]) => file)).toEqual(['lesion/broken.dcm']);
    expect(second.cache).toMatchObject({ hits: 3, misses: 1 });
    expect(second.files).toEqual(first.files);
    expect(Array.from(second.images.labels)).toEqual(Array.from(first.images.labels));
    expect(Array.from(second.images.images)).toEqual(Array.from(first.images.images));
    expect(second.rejected).toEqual(first.rejected);

    // Without a cache folder the same load decodes everything and gets the same result.
    decodes.mockClear();
    const uncached = await loadLabeledDataset({ ...options, cacheDir: undefined });
    expect(decodes).toHaveBeenCalledTimes(4);
    expect(Array.from(uncached.images.images)).toEqual(Array.from(first.images.images));
  });

  it('misses when the pipeline, the input size or the channels change', async () => {
    await loadLabeledDataset(options);
    for (const change of [
      { preprocessing: preprocessingSchema.parse({ normalise: 'z-score' }) },
      { inputSize: 12 },
      { channels: 3 as const },
    ]) {
      decodes.mockClear();
      const loaded = await loadLabeledDataset({ ...options, ...change });
      expect(decodes).toHaveBeenCalledTimes(4);
      expect(loaded.cache).toMatchObject({ hits: 0, misses: 4 });
    }
    // Each pipeline has its own folder beside the first.
    expect((await readdir(cacheDir)).length).toBe(4);
  });

  it('recomputes an entry that was damaged on disk instead of trusting it', async () => {
    const baseline = await loadLabeledDataset(options);
    const cache = new TensorCache(cacheDir, pipelineHash({ inputSize: 16, channels: 1 }), 16 * 16);
    const entry = cache.path(sha256Hex(await readFile(join(dir, 'lesion/mr.dcm'))));
    const bytes = await readFile(entry);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(entry, bytes);

    decodes.mockClear();
    const repaired = await loadLabeledDataset(options);
    expect(decodes.mock.calls.map(([, file]) => file).sort()).toEqual(['lesion/broken.dcm', 'lesion/mr.dcm']);
    expect(repaired.cache).toMatchObject({ hits: 2, corrupt: 1 });
    expect(Array.from(repaired.images.images)).toEqual(Array.from(baseline.images.images));

    // And the rewritten entry is good again.
    decodes.mockClear();
    await loadLabeledDataset(options);
    expect(decodes).toHaveBeenCalledTimes(1);
  });

  it('labels by UID from the identity stored with the tensor, without decoding', async () => {
    const csv = join(root, 'labels.csv');
    await writeFile(csv, 'sop_instance_uid,label\n1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322,normal\n1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457,lesion\n');
    const byUid = { ...options, labelsCsv: csv, cacheDir: join(root, 'state', 'uid-cache') };
    const first = await loadLabeledDataset(byUid);
    expect(first.files).toEqual(['lesion/mr.dcm', 'normal/ct.dcm']);
    decodes.mockClear();
    const second = await loadLabeledDataset(byUid);
    // rgb.dcm has no row, so it was never preprocessed or cached; broken.dcm never decodes.
    expect(decodes.mock.calls.map(([, file]) => file).sort()).toEqual(['lesion/broken.dcm', 'lesion/rgb.dcm']);
    expect(second.files).toEqual(first.files);
    expect(Array.from(second.images.labels)).toEqual([1, 0]);
  });
});
