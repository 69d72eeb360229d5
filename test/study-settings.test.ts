import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { federation, modelSpecFromMessage, parseModelSpec, type ModelSpec } from '@federa/shared';
import { parseCoordinatorConfig, startCoordinator } from '@federa/coordinator';
import { RawSite, rest, studyBody } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 2 };

/** What a researcher declares about local training reaches every site in its train task. */
describe('study training settings', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  /** The first train task a study with `overrides` hands its only site. */
  const firstTrainTask = async (overrides: Record<string, unknown>): Promise<federation.TrainTask> => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-settings-'));
    dirs.push(dir);
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: dir }));
    const site = new RawSite(coordinator.grpcPort, 'site-a');
    try {
      await site.register();
      const task = site.firstTask();
      await new Promise((r) => setTimeout(r, 200));
      const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 1, aggregation: 'plaintext', ...overrides }));
      expect(created.status).toBe(201);
      await rest(coordinator, 'POST', `/studies/${created.body.id as string}/start`);
      const received = await task;
      if (received.kind?.$case !== 'train') throw new Error('expected a train task');
      return received.kind.value;
    } finally {
      site.close();
      await coordinator.close();
    }
  };

  const firstTrainingSettings = async (overrides: Record<string, unknown>): Promise<federation.TrainingSettings | undefined> =>
    (await firstTrainTask(overrides)).training;

  it('travel in the train task: optimizer, augmentation, class weighting and FedProx mu', async () => {
    const training = await firstTrainingSettings({
      optimizer: 'sgd',
      augmentation: { flips: true, rotationDegrees: 10, intensityJitter: 0.1 },
      classWeights: [1, 4],
      fedProxMu: 0.01,
    });
    expect(training).toEqual({
      localEpochs: 1,
      localSteps: 0,
      batchSize: 4,
      learningRate: 0.01,
      optimizer: federation.Optimizer.OPTIMIZER_SGD,
      augmentation: { flips: true, rotationDegrees: 10, intensityJitter: 0.1 },
      classWeighting: { balanced: false, weights: [1, 4] },
      proximalMu: 0.01,
    });
  });

  it('a number of local steps travels instead of local epochs', async () => {
    const training = await firstTrainingSettings({ localEpochs: undefined, localSteps: 25 });
    expect(training).toMatchObject({ localEpochs: 0, localSteps: 25, batchSize: 4 });
  });

  it("an architecture's own options travel with the model, so the site builds the model the study declares", async () => {
    const resnet: ModelSpec = { architecture: 'resnet', inputSize: 16, channels: 1, classes: 2, seed: 2, width: 8, blocksPerStage: [1, 1] };
    const task = await firstTrainTask({ model: resnet });
    expect(task.model?.optionsJson).toBe('{"blocksPerStage":[1,1],"width":8}');
    expect(modelSpecFromMessage(task.model!)).toEqual(parseModelSpec(resnet));
  });
});
