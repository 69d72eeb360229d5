import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { federation, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator } from '@federa/coordinator';
import { RawSite, rest, studyBody } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 2 };

/** What a researcher declares about local training reaches every site in its train task. */
describe('study training settings', () => {
  const dir = mkdtemp(join(tmpdir(), 'federa-settings-'));
  afterAll(async () => rm(await dir, { recursive: true, force: true }));

  it('travel in the train task: optimizer, augmentation, class weighting and FedProx mu', async () => {
    const coordinator = await startCoordinator(
      parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: await dir }),
    );
    const site = new RawSite(coordinator.grpcPort, 'site-a');
    try {
      await site.register();
      const task = site.firstTask();
      await new Promise((r) => setTimeout(r, 200));
      const body = studyBody(spec, {
        minSites: 1,
        aggregation: 'plaintext',
        optimizer: 'sgd',
        augmentation: { flips: true, rotationDegrees: 10, intensityJitter: 0.1 },
        classWeights: [1, 4],
        fedProxMu: 0.01,
      });
      const created = await rest(coordinator.httpPort, 'POST', '/studies', body);
      expect(created.status).toBe(201);
      await rest(coordinator.httpPort, 'POST', `/studies/${created.body.id as string}/start`);
      const received = await task;
      if (received.kind?.$case !== 'train') throw new Error('expected a train task');
      expect(received.kind.value.training).toEqual({
        localEpochs: 1,
        batchSize: 4,
        learningRate: 0.01,
        optimizer: federation.Optimizer.OPTIMIZER_SGD,
        augmentation: { flips: true, rotationDegrees: 10, intensityJitter: 0.1 },
        classWeighting: { balanced: false, weights: [1, 4] },
        proximalMu: 0.01,
      });
    } finally {
      site.close();
      await coordinator.close();
    }
  });
});
