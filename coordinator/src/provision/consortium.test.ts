import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConsortiumConfigError, loadConsortiumFile, parseConsortiumConfig, parseConsortiumYaml } from './consortium.js';

const valid = {
  consortium: { name: 'North imaging' },
  coordinator: { hostnames: ['coordinator.example.org'] },
  sites: [{ id: 'hospital-a' }, { id: 'hospital-b' }],
};

function errorOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ConsortiumConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConsortiumConfigError');
}

describe('consortium.yaml', () => {
  it('fills in default validity and an empty IP list', () => {
    expect(parseConsortiumConfig(valid)).toEqual({ ...valid, coordinator: { ...valid.coordinator, ips: [] }, validityDays: { ca: 3650, server: 365, site: 365 } });
    const yaml = `consortium:\n  name: North imaging\ncoordinator:\n  hostnames: [coordinator.example.org, localhost]\n  ips: [10.0.0.5]\nsites:\n  - id: hospital-a\nvalidityDays:\n  site: 90\n`;
    expect(parseConsortiumYaml(yaml).validityDays).toEqual({ ca: 3650, server: 365, site: 90 });
  });

  it('names the field that is wrong', () => {
    expect(errorOf(() => parseConsortiumConfig({ ...valid, sites: [{ id: 'a' }, { id: 'b' }, { id: 'a' }] }))).toContain(
      'sites.2.id: duplicate site id "a" (also sites.0.id)',
    );
    expect(errorOf(() => parseConsortiumConfig({ ...valid, sites: [{ id: 'Hospital A' }] }))).toContain('sites.0.id: a site id is');
    expect(errorOf(() => parseConsortiumConfig({ ...valid, sites: [{ id: 'coordinator' }] }))).toContain('sites.0.id: "coordinator" is reserved');
    expect(errorOf(() => parseConsortiumConfig({ ...valid, coordinator: { hostnames: ['10.0.0.1'] } }))).toContain(
      'coordinator.hostnames.0: is an IP address',
    );
    expect(errorOf(() => parseConsortiumConfig({ ...valid, coordinator: { hostnames: [] } }))).toContain('coordinator.hostnames');
    expect(errorOf(() => parseConsortiumConfig({ ...valid, coordinator: { hostnames: ['x.org'], ips: ['10.0.0.256'] } }))).toContain(
      'coordinator.ips.0: is not an IPv4 or IPv6 address',
    );
    const typo = errorOf(() => parseConsortiumConfig({ ...valid, consortium: { nmae: 'typo' } }));
    expect(typo).toContain('consortium.name: Invalid input');
    expect(typo).toContain('consortium: Unrecognized key: "nmae"');
    expect(errorOf(() => parseConsortiumConfig({ ...valid, validityDays: { ca: 365, site: 400 } }))).toContain(
      "validityDays.site: 400 days is longer than the CA's 365",
    );
    expect(errorOf(() => parseConsortiumConfig({ ...valid, validityDays: { site: 0 } }))).toContain('validityDays.site');
    expect(errorOf(() => parseConsortiumConfig({ ...valid, consortium: { name: 'x'.repeat(65) } }))).toContain('consortium.name');
  });

  it('reports YAML syntax errors with their line', () => {
    expect(errorOf(() => parseConsortiumYaml('consortium:\n  name: [unclosed\nsites: []\n', 'consortium.yaml'))).toMatch(
      /consortium\.yaml is not valid YAML at line \d+/,
    );
  });

  it('says when the file is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-consortium-'));
    try {
      await expect(loadConsortiumFile(join(dir, 'nope.yaml'))).rejects.toThrow(/nope\.yaml does not exist/);
      await writeFile(join(dir, 'c.yaml'), 'consortium: {name: X}\ncoordinator: {hostnames: [h.example]}\nsites: [{id: a}]\nextra: 1\n');
      await expect(loadConsortiumFile(join(dir, 'c.yaml'))).rejects.toThrow(/c\.yaml is invalid:\n.*extra/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
