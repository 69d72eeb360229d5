import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Durable file writes shared by every component that keeps state on disk (blobs, kits, a site's round
 * records): a crash leaves either the old file or the new one, never half of one.
 */

/** Private keys, CKKS secret keys, a site's update records: owner read/write only. */
export const SECRET_FILE_MODE = 0o600;

export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Makes a rename durable; some platforms (Windows) cannot open directories, and there it is moot. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(dir, constants.O_RDONLY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EISDIR' || code === 'EPERM' || code === 'EACCES') return;
    throw error;
  }
  try {
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EPERM') throw error;
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

/** Replaces a file atomically (temporary sibling, fsync, rename, fsync of the folder). */
export async function replaceFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeNewFile(temporary, data, mode);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  await syncDirectory(dirname(path));
}

/**
 * Makes `dir` (and missing parents) and tightens it to owner-only, for folders that hold what only this process
 * may read (a coordinator's data, a site's state). Returns why it could not tighten a folder it does not own, for
 * the caller to log; the folder is then left as it is.
 */
export async function ownerOnlyDir(dir: string): Promise<string | null> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    await chmod(dir, 0o700);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}
