import { randomBytes } from 'node:crypto';
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DoctorCheck } from './types.js';

const GIB = 1024 ** 3;
/** Below this the agent can fail mid-round: an encrypted update, its copy and a global model take hundreds of MB. */
export const DISK_FAIL_BYTES = 1 * GIB;
/** Below this a few studies' models, sent updates and the tensor cache fill the folder. */
export const DISK_WARN_BYTES = 5 * GIB;

/**
 * Writes and deletes a file in the state folder: access(W_OK) says yes on a read-only mount and for root, and the
 * agent's first write would be the one to fail.
 */
export async function checkStateDir(stateDir: string): Promise<DoctorCheck> {
  const name = 'state folder';
  const probe = join(stateDir, `.doctor-${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(stateDir, { recursive: true });
    await writeFile(probe, 'federa-site doctor write test\n', { flag: 'wx' });
    await rm(probe);
    return { name, ok: true, detail: `${stateDir} is writable (a test file was created and deleted)` };
  } catch (error) {
    await rm(probe, { force: true }).catch(() => undefined);
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'EROFS'
        ? 'the folder is on a read-only file system (under systemd, /etc is read-only): set stateDir to an absolute path such as /var/lib/federa-site'
        : code === 'EACCES' || code === 'EPERM'
          ? 'give the agent\'s user write access to it (chown/chmod), or set stateDir to a folder it owns, e.g. /var/lib/federa-site'
          : 'set stateDir in site.yaml to an absolute folder the agent\'s user can write, e.g. /var/lib/federa-site';
    return { name, ok: false, detail: `cannot write in ${stateDir}: ${(error as Error).message}`, hint: why };
  }
}

/** The verdict on `free` bytes available in `stateDir`; separate from statfs so each threshold can be tested. */
export function judgeFreeSpace(stateDir: string, free: number): DoctorCheck {
  const name = 'disk space';
  const detail = `${formatBytes(free)} free in ${stateDir}`;
  if (free < DISK_FAIL_BYTES) {
    return {
      name,
      ok: false,
      detail,
      hint: `free at least ${formatBytes(DISK_WARN_BYTES)} there (old studies' folders under stateDir can go once their models are exported), or move stateDir to a larger disk`,
    };
  }
  if (free < DISK_WARN_BYTES) {
    return { name, ok: true, warning: true, detail, hint: `less than ${formatBytes(DISK_WARN_BYTES)}: a few studies' models and updates will fill it; free space or move stateDir` };
  }
  return { name, ok: true, detail };
}

export async function checkDiskSpace(stateDir: string): Promise<DoctorCheck> {
  try {
    const stats = await statfs(stateDir);
    // bavail, not bfree: blocks reserved for root are not the agent's to use.
    return judgeFreeSpace(stateDir, stats.bavail * stats.bsize);
  } catch (error) {
    return { name: 'disk space', ok: false, detail: `cannot read free space of ${stateDir}: ${(error as Error).message}`, hint: 'fix the state folder first' };
  }
}

export function formatBytes(bytes: number): string {
  return bytes >= GIB ? `${(bytes / GIB).toFixed(1)} GiB` : `${Math.round(bytes / 1024 ** 2)} MiB`;
}
