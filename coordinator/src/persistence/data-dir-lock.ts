import { readFile, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

/**
 * PGlite runs PostgreSQL inside this process with no postmaster to arbitrate, so two processes on one
 * data folder would silently corrupt it. A pid file taken with O_EXCL makes the second one fail fast.
 */
export interface DataDirLock {
  readonly path: string;
  release(): Promise<void>;
}

export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
}

// Locks held by this process: a pid check cannot tell our own second open from a stale file.
const held = new Set<string>();

export async function acquireDataDirLock(lockPath: string): Promise<DataDirLock> {
  const path = resolve(lockPath);
  if (held.has(path)) {
    throw new DataDirLockedError(`${path} is already held by this process: the database is open twice`);
  }
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
      held.add(path);
      return { path, release: releaser(path) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    // Our own pid here means a previous incarnation (containers reuse pid 1), so it is stale too.
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new DataDirLockedError(`${path} is held by running process ${owner}; only one process may open the database`);
    }
    await rm(path, { force: true });
  }
  throw new DataDirLockedError(`could not take ${path}: another process keeps re-creating it`);
}

function releaser(path: string): () => Promise<void> {
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    held.delete(path);
    // Leave the file alone if someone took it over after deciding ours was stale.
    const owner = await readFile(path, 'utf8').catch(() => '');
    if (Number.parseInt(owner, 10) === process.pid) await rm(path, { force: true });
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
