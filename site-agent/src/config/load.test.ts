import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSiteConfig } from './index.js';

/** Under systemd the working directory is often read-only (/etc/federa): relative paths must not depend on it. */
describe('loadSiteConfig', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it('resolves relative paths in site.yaml against the file\'s folder, not the working directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'federa-config-'));
    dirs.push(dir);
    const folder = join(dir, 'etc', 'federa');
    await mkdir(folder, { recursive: true });
    await writeFile(
      join(folder, 'site.yaml'),
      ['site: { id: hospital-a }', 'coordinator: { address: "c.example.org:50051", kit: kit }', 'data: { dir: ../images, labels: labels.csv }', 'stateDir: ./state', ''].join('\n'),
    );
    expect(process.cwd()).not.toBe(folder);
    const config = await loadSiteConfig(join(folder, 'site.yaml'));
    expect(config.stateDir).toBe(join(folder, 'state'));
    expect(config.coordinator.kit).toBe(join(folder, 'kit'));
    expect(config.data.dir).toBe(join(dir, 'etc', 'images'));
    expect(config.data.labels).toBe(join(folder, 'labels.csv'));
    // A relative path to the file itself works the same way.
    const relativeToCwd = await loadSiteConfig(relative(process.cwd(), join(folder, 'site.yaml')));
    expect(relativeToCwd.stateDir).toBe(join(folder, 'state'));
  });
});
