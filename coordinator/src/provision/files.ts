import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SECRET_FILE_MODE, syncDirectory, writeNewFile } from '@federa/shared';
import { ProvisionError } from './errors.js';

export { pathExists, replaceFile, SECRET_FILE_MODE, writeNewFile } from '@federa/shared';
export const PUBLIC_FILE_MODE = 0o644;
/** Kit folders hold private keys, so only their owner may list or enter them. */
export const KIT_DIR_MODE = 0o700;

export async function makeKitDir(path: string): Promise<void> {
  await mkdir(path, { mode: KIT_DIR_MODE });
  await chmod(path, KIT_DIR_MODE);
}

/** Moves a fully written folder into place; the rename is what makes a new kit appear all at once. */
export async function publishDir(temporary: string, final: string): Promise<void> {
  await rename(temporary, final);
  await syncDirectory(dirname(final));
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
