import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeSite, type RunningCoordinator } from '@federa/coordinator';
import { formatDoctorReport, generateConsortium, parseSiteConfig, PrivacyLedger, runDoctor, type SiteConfig } from '@federa/site-agent';
import { startProvisionedCoordinator } from './support/kits.js';

/** `federa-site doctor` tells hospital IT what works and, for what does not, what to do. */
describe('federa-site doctor', () => {
  let dir: string;
  let coordinator: RunningCoordinator;
  let config: (overrides?: Record<string, unknown>) => SiteConfig;
  let kits: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-doctor-'));
    // The coordinator's certificate names no IP, as at hospitals that reach it by an address its DNS names do not cover.
    const started = await startProvisionedCoordinator(dir, ['hospital-a', 'hospital-b'], { hostnames: ['localhost', 'coordinator.test'], ips: [] });
    kits = started.kits;
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
      ['disk space', true],
      ['site policy', true],
      ['privacy ledger', true],
      ['compute backend', true],
      ['coordinator certificate', true],
      ['coordinator', true],
      ['revocation', true],
    ]);
    expect(checks.find((c) => c.name === 'coordinator')?.detail).toMatch(/answers over mutual TLS: SERVING/);
    expect(checks.find((c) => c.name === 'coordinator certificate')?.detail).toMatch(/names localhost \(it holds DNS localhost, DNS coordinator\.test\)/);
    expect(checks.find((c) => c.name === 'revocation')?.detail).toMatch(/^the coordinator accepts this site's certificate \(serial [0-9A-F]+\)/);
    expect(checks.find((c) => c.name === 'state folder')?.detail).toMatch(/is writable \(a test file was created and deleted\)/);
    expect(checks.find((c) => c.name === 'disk space')?.detail).toMatch(/ free in /);
    expect(checks.find((c) => c.name === 'compute backend')?.detail).toMatch(/; no GPU, \d+ CPU threads on this machine, training on \d+ threads? \(training\.threads: auto\)\. Backends in auto order: /);
    // Each backend, in the order auto tries them, with why it was passed over.
    expect(checks.find((c) => c.name === 'compute backend')?.detail).toMatch(
      /tensorflow-gpu: unavailable \(@tensorflow\/tfjs-node-gpu not installed\); webgpu: unavailable \(.*\); tensorflow: unavailable \(@tensorflow\/tfjs-node not installed\); wasm: in use \(WebAssembly binaries installed\); cpu: available \(plain JavaScript\)$/,
    );
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
    const unverified = await runDoctor(config({ stateDir, policy: { verifySum: false } }));
    expect(unverified.find((c) => c.name === 'site policy')).toMatchObject({
      warning: true,
      detail: expect.stringMatching(/trusts the coordinator's multiparty sums unchecked/),
      hint: expect.stringMatching(/^policy\.verifySum: false lets a dishonest coordinator/),
    });
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

  it('says "set coordinator.serverName" when the address is an IP the certificate does not name', async () => {
    const address = `127.0.0.1:${coordinator.grpcPort}`;
    const checks = await runDoctor(config({ coordinator: { address, kit: join(kits, 'sites', 'hospital-a') } }));
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(byName['coordinator certificate']).toMatchObject({
      ok: false,
      detail: "the coordinator's certificate does not name the IP address 127.0.0.1; it holds DNS localhost, DNS coordinator.test",
      hint: 'set coordinator.serverName: localhost in site.yaml (or another name it holds: coordinator.test); the address can stay 127.0.0.1',
    });
    // The gRPC failure reads UNAVAILABLE; its hint is the same fix, not a firewall.
    expect(byName.coordinator?.ok).toBe(false);
    expect(byName.coordinator?.hint).toMatch(/^set coordinator\.serverName: localhost/);
    expect(byName.coordinator?.hint).not.toMatch(/firewall/);
    expect(byName.revocation).toMatchObject({ ok: true, warning: true, detail: expect.stringMatching(/^not checked/) });

    const wrong = await runDoctor(config({ coordinator: { address, serverName: 'coordinator.example.org', kit: join(kits, 'sites', 'hospital-a') } }));
    expect(wrong.find((c) => c.name === 'coordinator certificate')).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/does not name coordinator\.serverName coordinator\.example\.org/),
      hint: expect.stringMatching(/^set coordinator\.serverName: localhost/),
    });
  });

  it('fails the state folder when it cannot be written, and reports no disk space for it', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a folder');
    const checks = await runDoctor(config({ stateDir: join(file, 'state') }));
    expect(checks.find((c) => c.name === 'state folder')).toMatchObject({ ok: false, detail: expect.stringMatching(/^cannot write in /), hint: expect.stringMatching(/stateDir/) });
    expect(checks.find((c) => c.name === 'disk space')).toMatchObject({ ok: false, detail: expect.stringMatching(/^not checked/) });
  });

  // Root writes through any mode bits, so only an unprivileged run can see a permission refusal.
  it.skipIf(process.getuid?.() === 0)('fails a state folder the agent\'s user may not write', async () => {
    const stateDir = join(dir, 'read-only-state');
    await mkdir(stateDir);
    await chmod(stateDir, 0o500);
    const check = (await runDoctor(config({ stateDir }))).find((c) => c.name === 'state folder');
    await chmod(stateDir, 0o700);
    expect(check).toMatchObject({ ok: false, hint: expect.stringMatching(/write access/) });
  });

  it('fails a revoked site with its certificate serial and what to ask the operator for', async () => {
    const siteB = () => config({ site: { id: 'hospital-b' }, coordinator: { address: `127.0.0.1:${coordinator.grpcPort}`, serverName: 'localhost', kit: join(kits, 'sites', 'hospital-b') } });
    expect((await runDoctor(siteB())).find((c) => c.name === 'revocation')?.ok).toBe(true);
    const { revoked } = await revokeSite({ outDir: kits, siteId: 'hospital-b', reason: 'left the consortium' });
    const serial = revoked[0]!.serialNumber;
    // The coordinator re-reads revoked.json every 2 s.
    let check;
    for (let attempt = 0; attempt < 20; attempt++) {
      check = (await runDoctor(siteB())).find((c) => c.name === 'revocation');
      if (!check?.ok) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(check).toMatchObject({
      ok: false,
      detail: `this site's certificate (serial ${serial}) was revoked: ask the consortium operator for a new kit (federa provision renew hospital-b)`,
      hint: expect.stringMatching(/left the consortium/),
    });
    const report = formatDoctorReport(await runDoctor(siteB()));
    expect(report).toContain(`[FAIL] revocation: this site's certificate (serial ${serial}) was revoked`);
    expect(report).not.toContain('All checks passed');
  });
});
