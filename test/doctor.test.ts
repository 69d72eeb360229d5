import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningCoordinator } from '@federa/coordinator';
import { generateConsortium, parseSiteConfig, PrivacyLedger, runDoctor, type SiteConfig } from '@federa/site-agent';
import { startProvisionedCoordinator } from './support/kits.js';

/** `federa-site doctor` tells hospital IT what works and, for what does not, what to do. */
describe('federa-site doctor', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let config: (overrides?: Record<string, unknown>) => SiteConfig;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-doctor-'));
    const started = await startProvisionedCoordinator(dir, ['hospital-a', 'hospital-b']);
    const kits = started.kits;
    coordinator = started.coordinator;
    const data = await generateConsortium({ outDir: join(dir, 'data'), sites: 1, imagesPerSite: 6, holdoutImages: 0, seed: 3 });
    const site = data.sites[0];
    if (!site) throw new Error('no site generated');
    config = (overrides = {}) =>
      parseSiteConfig(
        {
          site: { id: 'hospital-a' },
          coordinator: { address: `127.0.0.1:${coordinator.grpcPort}`, serverName: 'localhost', kit: join(kits, 'sites', 'hospital-a') },
          data: { dir: site.dir, labels: site.labelsCsv },
          stateDir: join(dir, 'state'),
          ...overrides,
        },
        dir,
      );
  });

  afterAll(async () => {
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('passes every check on a correctly installed site', async () => {
    const checks = await runDoctor(config());
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['site kit', true],
      ['data', true],
      ['state folder', true],
      ['site policy', true],
      ['privacy ledger', true],
      ['compute backend', true],
      ['coordinator', true],
    ]);
    expect(checks.find((c) => c.name === 'coordinator')?.detail).toMatch(/answers over mutual TLS: SERVING/);
    expect(checks.find((c) => c.name === 'data')?.detail).toMatch(/^6 labelled files/);
    expect(checks.find((c) => c.name === 'compute backend')?.detail).toMatch(/^wasm/);
    expect(checks.find((c) => c.name === 'site policy')).toEqual({ name: 'site policy', ok: true, detail: expect.stringMatching(/^encrypted studies only, at least 3 sites/) });
  });

  it('checks the privacy ledger and flags a policy meant for demos', async () => {
    const stateDir = join(dir, 'state-ledger');
    const path = join(stateDir, 'ledger', 'ledger.jsonl');
    const ledger = await PrivacyLedger.open(path, { siteId: 'hospital-a', certificateFingerprint: null, agentVersion: 't' });
    await ledger.record({ kind: 'registration', studyId: null, round: null, content: new Uint8Array([1, 2, 3]), encryption: null });
    const intact = await runDoctor(config({ stateDir, policy: { autoApprove: true } }));
    expect(intact.find((c) => c.name === 'privacy ledger')).toMatchObject({ ok: true, detail: expect.stringMatching(/^ledger OK: 2 entries/) });
    expect(intact.find((c) => c.name === 'site policy')).toMatchObject({ warning: true, hint: expect.stringMatching(/autoApprove is for demos/) });
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[1] = lines[1]!.replace('"registration"', '"metrics"');
    await writeFile(path, lines.join('\n'));
    const broken = await runDoctor(config({ stateDir }));
    expect(broken.find((c) => c.name === 'privacy ledger')).toMatchObject({ ok: false, detail: expect.stringMatching(/BROKEN at line 2/) });
  });

  it('names what is wrong and what to do about it', async () => {
    const checks = await runDoctor(
      config({
        site: { id: 'hospital-b' },
        coordinator: { address: '127.0.0.1:9', kit: join(dir, 'kits', 'sites', 'hospital-a') },
        data: { dir: join(dir, 'nowhere'), labels: join(dir, 'nowhere.csv') },
      }),
    );
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(byName['site kit']?.ok).toBe(false);
    expect(byName['site kit']?.detail).toMatch(/belongs to site "hospital-a", the config says "hospital-b"/);
    expect(byName.data?.ok).toBe(false);
    expect(byName.data?.hint).toMatch(/data\.dir/);
    expect(byName.coordinator?.ok).toBe(false);
  });
});
