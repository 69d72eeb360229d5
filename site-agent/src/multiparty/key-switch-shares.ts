import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceFile, SECRET_FILE_MODE } from '@federa/shared';

/**
 * A site's key-switching shares, one per summed ciphertext, kept in its state folder. A share is computed once: a
 * coordinator asking again (a retry, a restart on either side) gets the stored bytes. Fresh smudging noise on each
 * request would let repeated shares for one ciphertext be averaged until the noise no longer hides what it must.
 * The share is on disk before it is returned, so a crash between computing and sending cannot lead to a second one.
 */
export class KeySwitchShares {
  private readonly dir: string;
  private readonly inFlight = new Map<string, Promise<{ share: Uint8Array; resent: boolean }>>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'multiparty', 'shares');
  }

  /** The stored share for this sum, or `compute()`'s, stored first. */
  async shareFor(key: { epoch: number; sumSha256: string }, compute: () => Uint8Array | Promise<Uint8Array>): Promise<{ share: Uint8Array; resent: boolean }> {
    if (!Number.isInteger(key.epoch) || key.epoch < 1) throw new RangeError(`epoch must be a positive integer, got ${key.epoch}`);
    if (!/^[0-9a-f]{64}$/.test(key.sumSha256)) throw new RangeError(`sumSha256 must be 64 lower-case hex characters, got "${key.sumSha256.slice(0, 80)}"`);
    const name = `${key.epoch}-${key.sumSha256}.share`;
    // Two requests for the same sum at once in this process: both get the one share.
    const pending = this.inFlight.get(name);
    if (pending) return pending;
    const work = this.load(name, compute).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, work);
    return work;
  }

  private async load(name: string, compute: () => Uint8Array | Promise<Uint8Array>): Promise<{ share: Uint8Array; resent: boolean }> {
    const path = join(this.dir, name);
    try {
      return { share: new Uint8Array(await readFile(path)), resent: true };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const share = await compute();
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await replaceFile(path, share, SECRET_FILE_MODE);
    return { share, resent: false };
  }
}
