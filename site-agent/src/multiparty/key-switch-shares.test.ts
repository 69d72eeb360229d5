import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeySwitchShares } from './key-switch-shares.js';

describe('key-switching shares at a site', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-shares-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('computes a share once per summed ciphertext and resends the stored one, also after a restart', async () => {
    let computed = 0;
    const compute = () => new Uint8Array([++computed, 7, 7]);
    const key = { epoch: 1, sumSha256: 'a'.repeat(64) };
    const first = await new KeySwitchShares(dir).shareFor(key, compute);
    expect(first).toEqual({ share: new Uint8Array([1, 7, 7]), resent: false });
    // A new agent process (a restart) over the same state folder: the stored share, not a fresh one.
    const again = await new KeySwitchShares(dir).shareFor(key, compute);
    expect(again).toEqual({ share: new Uint8Array([1, 7, 7]), resent: true });
    expect(computed).toBe(1);
    // Another sum, or the same sum in another epoch, is another share.
    await new KeySwitchShares(dir).shareFor({ epoch: 2, sumSha256: 'a'.repeat(64) }, compute);
    expect(computed).toBe(2);
    const files = await readdir(join(dir, 'multiparty', 'shares'));
    expect(files.sort()).toEqual([`1-${'a'.repeat(64)}.share`, `2-${'a'.repeat(64)}.share`]);
    expect((await stat(join(dir, 'multiparty', 'shares', files[0]!))).mode & 0o077).toBe(0);
  });

  it('gives two concurrent requests for one sum the same share', async () => {
    let computed = 0;
    const shares = new KeySwitchShares(dir);
    const key = { epoch: 1, sumSha256: 'b'.repeat(64) };
    const [x, y] = await Promise.all([shares.shareFor(key, () => new Uint8Array([++computed])), shares.shareFor(key, () => new Uint8Array([++computed]))]);
    expect(computed).toBe(1);
    expect(x.share).toEqual(y.share);
  });

  it('refuses names that are not an epoch and a SHA-256 (they become file names)', async () => {
    const shares = new KeySwitchShares(dir);
    await expect(shares.shareFor({ epoch: 1, sumSha256: '../../etc/passwd' }, () => new Uint8Array())).rejects.toThrow(/64 lower-case hex/);
    await expect(shares.shareFor({ epoch: 0, sumSha256: 'c'.repeat(64) }, () => new Uint8Array())).rejects.toThrow(/positive integer/);
  });
});
