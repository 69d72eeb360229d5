import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CkksContext, parameterCount, readSiteKit, untagVector, payloadPerCiphertext, type ModelSpec } from '@federa/shared';
import { runSitesCli } from '@federa/site-agent';
import { startProvisionedCoordinator } from './support/kits.js';
import { rest, studyBody, tokenFor } from './support/raw-site.js';

const spec: ModelSpec = { architecture: 'small-cnn', inputSize: 16, channels: 1, classes: 2, seed: 5 };

/** federa-sim sites: simulated sites drive a real coordinator over mutual TLS with real CKKS updates. */
describe('simulated sites', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('connect with their kits and answer every round of an encrypted study with a properly tagged update', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-simsites-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const siteIds = ['sim-01', 'sim-02', 'sim-03'];
    const { kits, coordinator } = await startProvisionedCoordinator(dir, siteIds);
    cleanup.push(() => coordinator.close());
    const stop = new AbortController();
    const out: string[] = [];
    const running = runSitesCli(
      ['--count', '3', '--kits', kits, '--coordinator', `127.0.0.1:${coordinator.grpcPort}`, '--server-name', 'localhost', '--threads', '2', '--json'],
      { stdout: (text) => out.push(text), stderr: () => undefined },
      stop.signal,
    );
    cleanup.push(async () => {
      stop.abort();
      await running;
    });
    await expect.poll(() => coordinator.connectedSites(), { timeout: 30_000 }).toEqual(siteIds);
    const created = await rest(coordinator, 'POST', '/studies', studyBody(spec, { minSites: 3, rounds: 2, aggregation: 'ckks' }));
    expect(created.status).toBe(201);
    const studyId = created.body.id as string;
    await rest(coordinator, 'POST', `/studies/${studyId}/start`);
    await expect.poll(async () => (await rest(coordinator, 'GET', `/studies/${studyId}`)).body.status, { timeout: 60_000 }).toBe('completed');
    const uploads = out.join('').split('\n').filter((line) => line.includes('"event":"upload"'));
    expect(uploads).toHaveLength(6);

    // The published aggregate of round 2 decrypts (with a site's key) to three sites' weights and slots, each once.
    const response = await fetch(`http://127.0.0.1:${coordinator.httpPort}/api/v1/studies/${studyId}/models/2`, {
      headers: { authorization: `Bearer ${await tokenFor(coordinator)}` },
    });
    expect(response.status).toBe(200);
    const secretKey = (await readSiteKit(join(kits, 'sites', 'sim-01'))).ckksSecretKey;
    const ckks = await CkksContext.fromKey(secretKey);
    cleanup.push(() => ckks.dispose());
    const parameters = parameterCount(spec);
    const tagged = ckks.decryptVector(new Uint8Array(await response.arrayBuffer()), secretKey);
    const sum = untagVector(tagged, parameters + 1 + siteIds.length, ckks.valuesPerCiphertext);
    expect(payloadPerCiphertext(ckks.valuesPerCiphertext)).toBeLessThan(ckks.valuesPerCiphertext);
    expect(sum[parameters]).toBeCloseTo(300, 3);
    for (let s = 0; s < siteIds.length; s++) expect(sum[parameters + 1 + s]).toBeCloseTo(1, 3);
    stop.abort();
    expect(await running).toBe(0);
  });
});
