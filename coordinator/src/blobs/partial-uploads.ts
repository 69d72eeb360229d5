import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SHA256_HEX, type BlobInfo, type BlobStore } from './blob-store.js';

/** Which upload a partial file belongs to: the study id and round are checked by the caller before they get here. */
export interface PartialKey {
  siteId: string;
  studyId: string;
  round: number;
  /** The whole update's SHA-256, as its header declared it. */
  sha256: string;
}

export class PartialOffsetError extends Error {
  override readonly name = 'PartialOffsetError';
  constructor(
    readonly held: number,
    readonly asked: number,
  ) {
    super(`the coordinator holds ${held} bytes of this update, not ${asked}; ask QueryUpload and resume from there`);
  }
}

/**
 * The bytes of uploads still arriving, kept across a broken stream so the site resumes where it stopped:
 * `<blobs>/partial/<study>/<round>/<site key>-<update sha256>`. A byte counts as held once written (a process crash
 * keeps it; a power loss may not, which the final hash check catches, and the site starts over). One partial per
 * site and round: starting another update drops the earlier one. The partials of a round go when it ends.
 */
export class PartialUploads {
  private readonly root: string;

  constructor(private readonly blobs: BlobStore) {
    this.root = join(blobs.rootDir, 'partial');
  }

  /** Bytes held of this update; 0 when none (or a file that is larger than the update can be). */
  async held(key: PartialKey, totalBytes: number): Promise<number> {
    const size = await sizeOf(this.pathOf(key));
    return size !== undefined && size <= totalBytes ? size : 0;
  }

  /**
   * Opens the partial to append from `offset`: 0 starts over (dropping what this site held for the round), anything
   * else must be exactly what is held.
   */
  async openAt(key: PartialKey, offset: number): Promise<PartialWriter> {
    const path = this.pathOf(key);
    if (offset === 0) {
      await this.dropSite(key);
      await mkdir(this.roundDir(key.studyId, key.round), { recursive: true, mode: 0o700 });
      return new PartialWriter(path, await open(path, 'w', 0o600), this.blobs);
    }
    const held = (await sizeOf(path)) ?? 0;
    if (held !== offset) throw new PartialOffsetError(held, offset);
    return new PartialWriter(path, await open(path, 'a', 0o600), this.blobs);
  }

  /** Forgets every partial of a round (it closed, failed or was abandoned). */
  async removeRound(studyId: string, round: number): Promise<void> {
    await rm(this.roundDir(studyId, round), { recursive: true, force: true });
  }

  /** The rounds that hold partials, for the sweep at start-up. */
  async rounds(): Promise<Array<{ studyId: string; round: number }>> {
    const found: Array<{ studyId: string; round: number }> = [];
    for (const studyId of await listDir(this.root)) {
      for (const round of await listDir(join(this.root, studyId))) {
        if (/^\d+$/.test(round)) found.push({ studyId, round: Number(round) });
      }
    }
    return found;
  }

  private async dropSite(key: PartialKey): Promise<void> {
    const prefix = `${siteKey(key.siteId)}-`;
    for (const name of await listDir(this.roundDir(key.studyId, key.round))) {
      if (name.startsWith(prefix)) await rm(join(this.roundDir(key.studyId, key.round), name), { force: true });
    }
  }

  private roundDir(studyId: string, round: number): string {
    return join(this.root, studyId, String(round));
  }

  private pathOf(key: PartialKey): string {
    if (!SHA256_HEX.test(key.sha256)) throw new TypeError(`not a SHA-256 digest: ${key.sha256.slice(0, 80)}`);
    return join(this.roundDir(key.studyId, key.round), `${siteKey(key.siteId)}-${key.sha256}`);
  }
}

/** Appends to one partial; `complete` moves the finished file into the blob store (by rename, no copy). */
export class PartialWriter {
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
    private readonly blobs: BlobStore,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    for (let offset = 0; offset < chunk.byteLength; ) {
      const { bytesWritten } = await this.handle.write(chunk, offset, chunk.byteLength - offset);
      offset += bytesWritten;
    }
  }

  /** Keeps what was written (the stream broke; the site may resume). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }

  async complete(): Promise<BlobInfo> {
    await this.close();
    return this.blobs.adopt(this.path);
  }

  /** Drops the partial (its bytes did not hash to what was declared: the site must start over). */
  async discard(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}

/** Site ids become part of a file name only through a hash, so no id can reach outside the folder. */
function siteKey(siteId: string): string {
  return createHash('sha256').update(siteId).digest('hex').slice(0, 32);
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}
