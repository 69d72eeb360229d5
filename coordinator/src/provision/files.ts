import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ProvisionError } from './errors.js';

/** Private keys and CKKS secret keys: owner read/write only. */
export const SECRET_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;
/** Kit folders hold private keys, so only their owner may list or enter them. */
export const KIT_DIR_MODE = 0o700;

export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates a new file (never overwrites) with its final mode from the first byte on, so a key is never
 * briefly readable by others, and flushes it to disk. chmod afterwards so the umask cannot change the mode.
 */
export async function writeNewFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chmod(path, mode);
}

/** Replaces a file atomically (temporary sibling, fsync, rename), so readers see the old or the new bytes, never half. */
export async function replaceFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeNewFile(temporary, data, mode);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await fsyncDir(dirname(path));
}

export async function makeKitDir(path: string): Promise<void> {
  await mkdir(path, { mode: KIT_DIR_MODE });
  await chmod(path, KIT_DIR_MODE);
}

/** Moves a fully written folder into place; the rename is what makes a new kit appear all at once. */
export async function publishDir(temporary: string, final: string): Promise<void> {
  await rename(temporary, final);
  await fsyncDir(dirname(final));
}

export function temporarySibling(path: string, purpose: string): string {
  return join(dirname(path), `.${basename(path)}.${purpose}-${randomBytes(6).toString('hex')}`);
}

/**
 * Serialises commands that change an existing kits folder (add-site, renew, revoke): two operators running
 * them at once would otherwise both read issued.json and one update would be lost.
 */
export async function withLock<T>(lockFile: string, work: () => Promise<T>): Promise<T> {
  try {
    await writeNewFile(lockFile, `${process.pid}\n`, SECRET_FILE_MODE);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ProvisionError(
        `another provisioning command is working on this folder (${lockFile} exists); if none is running, delete that file and retry`,
      );
    }
    throw error;
  }
  try {
    return await work();
  } finally {
    await rm(lockFile, { force: true });
  }
}
