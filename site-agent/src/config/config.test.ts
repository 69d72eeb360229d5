import { describe, expect, it } from 'vitest';
import { parseSiteConfig, SiteConfigError } from './index.js';

const valid = {
  site: { id: 'hospital-a' },
  coordinator: { address: '127.0.0.1:50051', insecure: true },
  data: { dir: 'images', labels: 'labels.csv' },
  stateDir: 'state',
};

describe('site config', () => {
  it('resolves relative paths against the config folder and fills defaults', () => {
    const config = parseSiteConfig(valid, '/srv/federa');
    expect(config.data.dir).toBe('/srv/federa/images');
    expect(config.stateDir).toBe('/srv/federa/state');
    expect(config.data.validationFraction).toBe(0.2);
    expect(config.training.backend).toBe('auto');
  });

  it('names the bad field', () => {
    const bad = { ...valid, coordinator: { address: 'no-port', insecure: true }, site: { id: 'Bad Name' } };
    expect(() => parseSiteConfig(bad, '/x', 'site.yaml')).toThrow(SiteConfigError);
    try {
      parseSiteConfig(bad, '/x', 'site.yaml');
    } catch (error) {
      expect((error as Error).message).toMatch(/site\.yaml is invalid/);
      expect((error as Error).message).toMatch(/coordinator\.address: must be host:port/);
      expect((error as Error).message).toMatch(/site\.id:/);
    }
  });

  it('refuses unknown keys, a silent plaintext transport, and TLS mixed with insecure', () => {
    expect(() => parseSiteConfig({ ...valid, extra: 1 }, '/x')).toThrow(/extra/);
    expect(() => parseSiteConfig({ ...valid, coordinator: { address: 'h:1' } }, '/x')).toThrow(/coordinator\.kit: is required: mutual TLS/);
    expect(() => parseSiteConfig({ ...valid, coordinator: { address: 'h:1', kit: 'k', insecure: true } }, '/x')).toThrow(
      /coordinator\.insecure: cannot be combined/,
    );
    const tls = parseSiteConfig({ ...valid, coordinator: { address: 'h:1', kit: 'kits/sites/hospital-a' } }, '/srv');
    expect(tls.coordinator.kit).toBe('/srv/kits/sites/hospital-a');
    expect(tls.coordinator.insecure).toBe(false);
  });

  it('takes a labels CSV or one folder per class as the data layout', () => {
    const csv = parseSiteConfig(valid, '/srv/federa');
    expect(csv.data).toMatchObject({ layout: 'csv', labels: '/srv/federa/labels.csv' });
    const folders = parseSiteConfig({ ...valid, data: { dir: 'images' } }, '/srv/federa');
    expect(folders.data).toMatchObject({ layout: 'folders', labels: undefined, dir: '/srv/federa/images' });
    expect(parseSiteConfig({ ...valid, data: { dir: 'images', layout: 'folders' } }, '/x').data.layout).toBe('folders');
    expect(() => parseSiteConfig({ ...valid, data: { dir: 'images', layout: 'csv' } }, '/x')).toThrow(/data\.labels: is required with layout: csv/);
    expect(() => parseSiteConfig({ ...valid, data: { ...valid.data, layout: 'folders' } }, '/x')).toThrow(/data\.labels: cannot be combined with layout: folders/);
    expect(() => parseSiteConfig({ ...valid, data: { dir: 'images', layout: 'tree' } }, '/x')).toThrow(/data\.layout: must be "csv" or "folders"/);
  });
});

describe('site policy', () => {
  it('defaults to the safe settings: encryption, three sites, figures only, nothing auto-approved', () => {
    const config = parseSiteConfig(valid, '/srv');
    expect(config.policy).toEqual({
      requireEncryption: true,
      minParticipants: 3,
      maxRounds: 100,
      shareMetrics: 'aggregate',
      minCountPerBin: 5,
      minStatisticsCount: 10,
      verifySum: true,
      autoApprove: false,
    });
  });

  it('checks multiparty sums unless verifySum is turned off, and takes only a boolean for it', () => {
    expect(parseSiteConfig({ ...valid, policy: { verifySum: false } }, '/x').policy.verifySum).toBe(false);
    expect(() => parseSiteConfig({ ...valid, policy: { verifySum: 'no' } }, '/x')).toThrow(/policy\.verifySum/);
  });

  it('trains on every core unless training.threads says how many, and names a bad count', () => {
    expect(parseSiteConfig(valid, '/x').training).toEqual({ backend: 'auto', threads: 'auto' });
    expect(parseSiteConfig({ ...valid, training: { threads: 3 } }, '/x').training).toEqual({ backend: 'auto', threads: 3 });
    for (const threads of [0, 1.5, 'many', 257]) expect(() => parseSiteConfig({ ...valid, training: { threads } }, '/x')).toThrow(/training\.threads/);
  });

  it('names what is wrong in the policy block and refuses a cohort of one', () => {
    expect(() => parseSiteConfig({ ...valid, policy: { minParticipants: 1 } }, '/x')).toThrow(/policy\.minParticipants: must be at least 2/);
    expect(() => parseSiteConfig({ ...valid, policy: { shareMetrics: 'some' } }, '/x')).toThrow(/policy\.shareMetrics: must be none, aggregate or full/);
    expect(() => parseSiteConfig({ ...valid, policy: { requireEncryption: 'yes' } }, '/x')).toThrow(/policy\.requireEncryption/);
    expect(() => parseSiteConfig({ ...valid, policy: { approveEverything: true } }, '/x')).toThrow(/approveEverything/);
  });
});
