import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePreprocessingJson, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator } from '@federa/coordinator';
import { RawSite, rest, studyBody } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 3, classes: 2, seed: 2 };

/** The pipeline a researcher declares is the one every site is told to run. */
describe('study preprocessing', () => {
  const dir = mkdtemp(join(tmpdir(), 'federa-preprocessing-'));
  afterAll(async () => rm(await dir, { recursive: true, force: true }));

  it('travels in the train task as canonical JSON the site parses back to the declared pipeline', async () => {
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: await dir }));
    const site = new RawSite(coordinator.grpcPort, 'site-a');
    try {
      await site.register();
      const task = site.firstTask();
      await new Promise((r) => setTimeout(r, 200));
      const preprocessing = { window: 'ct-lung', resize: 'center-crop', denoise: { median: 1 }, normalise: { clahe: { tiles: 4 } } };
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 1, aggregation: 'plaintext', preprocessing }));
      expect(created.status).toBe(201);
      await rest(coordinator, 'POST', `/studies/${created.body.id as string}/start`);
      const received = await task;
      if (received.kind?.$case !== 'train') throw new Error('expected a train task');
      expect(received.kind.value.model?.channels).toBe(3);
      expect(parsePreprocessingJson(received.kind.value.preprocessingJson)).toEqual({
        window: 'ct-lung',
        resize: 'center-crop',
        cropFraction: 1,
        denoise: { median: 1 },
        normalise: { clahe: { tiles: 4, maxSlope: 3 } },
      });
    } finally {
      site.close();
      await coordinator.close();
    }
  });

  it('refuses a study whose pipeline is out of bounds, naming the field', async () => {
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: join(await dir, 'b') }));
    try {
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { aggregation: 'plaintext', preprocessing: { denoise: { median: 12 } } }));
      expect(created.status).toBe(400);
      expect(JSON.stringify(created.body)).toContain('preprocessing.denoise.median: median radius must be 1-7 pixels');
    } finally {
      await coordinator.close();
    }
  });
});
