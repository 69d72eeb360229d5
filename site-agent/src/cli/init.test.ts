import { describe, expect, it } from 'vitest';
import { defaultStateDir, SYSTEM_STATE_DIR } from './init.js';

describe('federa-site init: default state folder', () => {
  it('is beside the config, except under /etc, which is read-only for a systemd service', () => {
    expect(defaultStateDir('/srv/federa/site.yaml')).toBe('/srv/federa/state');
    expect(defaultStateDir('/etc/federa/site.yaml')).toBe(SYSTEM_STATE_DIR);
    expect(defaultStateDir('/etc/site.yaml')).toBe('/var/lib/federa-site');
    expect(defaultStateDir('/etcetera/site.yaml')).toBe('/etcetera/state');
  });
});
