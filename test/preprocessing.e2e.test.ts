import { readdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preprocessingSchema, type PreprocessingInput } from '@federa/shared';
import { pipelineHash } from '@federa/site-agent';
import { LocalConsortium, type StudyStatusView } from '../demo/src/consortium.js';

const IMAGES = 16;

/** A site trains on images prepared exactly as the study declares, and keeps them for the next round. */
describe('a study with a declared preprocessing pipeline', () => {
  const preprocessing: PreprocessingInput = { window: 'none', denoise: { median: 1 }, normalise: 'z-score', resize: 'center-crop' };
  let workDir: string;
  let consortium: LocalConsortium;
  let study: StudyStatusView;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'federa-preprocessing-e2e-'));
    consortium = await LocalConsortium.start({
      workDir,
      sites: 2,
      imagesPerSite: IMAGES,
      holdoutImages: 0,
      seed: 4,
      transport: 'insecure',
      // A local test of preprocessing, in the clear: the policy lets it, and approves without asking.
      policy: { requireEncryption: false, autoApprove: true },
    });
    const created = await consortium.createStudy({
      name: 'declared pipeline',
      model: { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 9 },
      classNames: ['normal', 'lesion'],
      rounds: 2,
      minSites: 2,
      localSteps: 1,
      batchSize: 4,
      learningRate: 0.01,
      aggregation: 'plaintext',
      preprocessing,
    });
    await consortium.startStudy(created.id);
    study = await consortium.follow(created.id, () => undefined, 240_000);
  }, 300_000);

  afterAll(async () => {
    await consortium?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('completes, with the site caching tensors under the hash of exactly that pipeline', async () => {
    expect(study.status).toBe('completed');
    const site = consortium.sites[0];
    if (!site) throw new Error('no site');
    const expected = pipelineHash({ inputSize: 16, channels: 1, preprocessing: preprocessingSchema.parse(preprocessing) });
    const cacheRoot = join(site.stateDir, 'tensor-cache');
    expect(await readdir(cacheRoot)).toEqual([expected]);
    let entries = 0;
    for (const shard of await readdir(join(cacheRoot, expected))) entries += (await readdir(join(cacheRoot, expected, shard))).length;
    expect(entries).toBe(IMAGES);
  });
});
