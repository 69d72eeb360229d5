import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCoordinatorConfig, startCoordinator } from '@federa/coordinator';
import { generateConsortium, parseSiteConfig, SiteAgent, siteTransport } from '@federa/site-agent';
import { freePort } from './support/ports.js';

/** The agent's optional status endpoint, started and stopped with the agent from `status:` in site.yaml. */
describe('site agent status endpoint', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('says whether the agent is connected, serves its metrics, and goes when the agent stops', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-site-status-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const coordinator = await startCoordinator(parseCoordinatorConfig({ insecure: true, httpPort: 0, grpcPort: 0, dataDir: join(dir, 'coordinator') }));
    cleanup.push(() => coordinator.close());
    const data = await generateConsortium({ outDir: join(dir, 'data'), sites: 1, imagesPerSite: 4, holdoutImages: 0, seed: 3 });
    const port = await freePort();
    const config = parseSiteConfig(
      {
        site: { id: 'site-a' },
        coordinator: { address: `127.0.0.1:${coordinator.grpcPort}`, insecure: true },
        data: { dir: data.sites[0]!.dir },
        stateDir: join(dir, 'state'),
        status: { port },
      },
      dir,
    );
    const agent = new SiteAgent(config, await siteTransport(config));
    const running = agent.run();
    let stopped = false;
    cleanup.push(async () => {
      if (stopped) return;
      agent.stop();
      await running;
    });
    const base = `http://127.0.0.1:${port}`;
    const health = async () => (await (await fetch(`${base}/health`)).json()) as { connected: boolean; siteId: string; current: unknown };
    await expect.poll(async () => (await health().catch(() => null))?.connected, { timeout: 60_000 }).toBe(true);
    expect(await health()).toMatchObject({ siteId: 'site-a', current: null });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^federa_site_connected 1$/m);
    expect(metrics).toMatch(/^federa_site_updates_sent_total 0$/m);

    agent.stop();
    await running;
    stopped = true;
    await expect(fetch(`${base}/health`)).rejects.toThrow();
  });
});
