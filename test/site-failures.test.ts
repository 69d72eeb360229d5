import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCoordinatorConfig, startCoordinator } from '@federa/coordinator';
import { generateConsortium, parseSiteConfig, SiteAgent, siteTransport } from '@federa/site-agent';
import { RawSite, rest, studyBody } from './support/raw-site.js';

const spec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 6 };

/** A site that cannot train says so at once, so the round does not wait for its deadline. */
describe('a site that cannot load its data', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('reports no usable data when its labels file is missing, without paths, and the round stops waiting for it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-site-failure-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: join(dir, 'coordinator') }));
    cleanup.push(() => coordinator.close());
    const data = await generateConsortium({ outDir: join(dir, 'data'), sites: 1, imagesPerSite: 8, holdoutImages: 0, seed: 2 });
    const config = parseSiteConfig(
      {
        site: { id: 'site-a' },
        coordinator: { address: `127.0.0.1:${coordinator.grpcPort}`, insecure: true },
        data: { dir: data.sites[0]!.dir, labels: join(dir, 'no-such-labels.csv') },
        stateDir: join(dir, 'state'),
        policy: { requireEncryption: false, minParticipants: 2, autoApprove: true },
      },
      dir,
    );
    const agent = new SiteAgent(config, await siteTransport(config));
    const running = agent.run();
    cleanup.push(async () => {
      agent.stop();
      await running;
    });
    const other = new RawSite(coordinator.grpcPort, 'site-b');
    await other.register();
    const tasks = other.inbox();
    cleanup.push(() => tasks.close(), () => other.close());
    await expect.poll(() => coordinator.connectedSites(), { timeout: 60_000 }).toEqual(['site-a', 'site-b']);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 2, aggregation: 'plaintext', roundTimeoutSeconds: 600 }));
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    const began = Date.now();
    await expect
      .poll(async () => ((await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ failures: unknown[] }>)[0]?.failures.length, { timeout: 60_000 })
      .toBe(1);
    expect(Date.now() - began).toBeLessThan(60_000);
    const round = ((await rest(coordinator, 'GET', `/studies/${studyId}`)).body.rounds as Array<{ failures: Array<{ siteId: string; reason: string; message: string }> }>)[0];
    expect(round?.failures).toEqual([{ siteId: 'site-a', reason: 'no-usable-data', message: expect.stringMatching(/this site cannot train: its labels file is missing; its IT can run `federa-site doctor`/) }]);
    expect(round?.failures[0]?.message).not.toContain(dir);
  });
});
