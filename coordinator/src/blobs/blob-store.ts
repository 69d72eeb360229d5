import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pathExists, syncDirectory } from '@federa/shared';

/** Lower-case hex SHA-256: the only spelling accepted, so one blob never has two names. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(value: string): boolean {
  return SHA256_HEX.test(value);
}

export class InvalidSha256Error extends TypeError {
  override readonly name = 'InvalidSha256Error';
  readonly value: string;
  constructor(value: string) {
    super(`not a SHA-256 digest (64 lower-case hex characters): ${JSON.stringify(value.slice(0, 80))}`);
    this.value = value;
  }
}

export class BlobNotFoundError extends Error {
  override readonly name = 'BlobNotFoundError';
  readonly sha256: string;
  constructor(sha256: string) {
    super(`no blob with sha256 ${sha256}`);
    this.sha256 = sha256;
  }
}

export interface BlobInfo {
  sha256: string;
  size: number;
}

export type BlobSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

const READ_CHUNK_BYTES = 256 * 1024;

/**
 * Content-addressed files under `<root>/sha256/<first two hex>/<hash>`. Writes go to `<root>/tmp`
 * (same file system, so the final rename is atomic), are fsynced, then renamed into place and the
 * directory fsynced: after put() resolves the blob survives a crash, and a reader never sees a
 * partial file. Storing the same bytes twice is a no-op that returns the same address.
 */
export class BlobStore {
  readonly rootDir: string;
  constructor(rootDir: string) {
    this.rootDir = rootDir;
  }

  /** Where a blob lives (whether or not it exists yet). */
  pathOf(sha256: string): string {
    if (!isSha256Hex(sha256)) throw new InvalidSha256Error(sha256);
    return join(this.rootDir, 'sha256', sha256.slice(0, 2), sha256);
  }

  async put(source: BlobSource): Promise<BlobInfo> {
    const tmpDir = join(this.rootDir, 'tmp');
    // Owner-only: updates and aggregates are ciphertexts, but plaintext studies' updates are not.
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const tmpPath = join(tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const hash = createHash('sha256');
    let size = 0;
    let handle: FileHandle | undefined = await open(tmpPath, 'wx', 0o600);
    try {
      for await (const chunk of chunksOf(source)) {
        if (!(chunk instanceof Uint8Array)) throw new TypeError('blob chunks must be Uint8Array');
        hash.update(chunk);
        size += chunk.byteLength;
        await writeFully(handle, chunk);
      }
      await handle.sync();
      await handle.close();
      handle = undefined;

      return await this.place(tmpPath, hash.digest('hex'), size);
    } catch (error) {
      await handle?.close().catch(() => undefined);
      await rm(tmpPath, { force: true });
      throw error;
    }
  }

  /**
   * Takes a finished file (an upload assembled in parts) into the store: hashes it, fsyncs it and renames it into
   * place, so its bytes are never copied. The file must be on the same file system (under rootDir).
   */
  async adopt(path: string): Promise<BlobInfo> {
    const hash = createHash('sha256');
    let size = 0;
    const handle = await open(path, 'r+');
    try {
      for await (const chunk of handle.createReadStream({ autoClose: false, start: 0, highWaterMark: READ_CHUNK_BYTES })) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).byteLength;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    return this.place(path, hash.digest('hex'), size);
  }

  /** Moves a written, synced file to its content address (or drops it when those bytes are stored already). */
  private async place(path: string, sha256: string, size: number): Promise<BlobInfo> {
    const finalPath = this.pathOf(sha256);
    if (await pathExists(finalPath)) {
      await rm(path, { force: true });
      return { sha256, size };
    }
    await mkdir(dirname(finalPath), { recursive: true, mode: 0o700 });
    // Blobs are immutable; read-only (and owner-only) files make accidental in-place edits fail loudly.
    await chmod(path, 0o400);
    // Concurrent puts of the same bytes both rename identical files onto one name: harmless.
    await rename(path, finalPath);
    await syncDirectory(dirname(finalPath));
    return { sha256, size };
  }

  /** The whole blob in memory; use createReadStream for large ones. */
  async get(sha256: string): Promise<Uint8Array> {
    const path = this.pathOf(sha256);
    try {
      return await readFile(path);
    } catch (error) {
      throw notFoundOr(error, sha256);
    }
  }

  /** The whole blob in shared memory, for worker threads to read in place (an encrypted update being summed). */
  async getShared(sha256: string): Promise<Uint8Array> {
    const size = await this.size(sha256);
    if (size === undefined) throw new BlobNotFoundError(sha256);
    const bytes = new Uint8Array(new SharedArrayBuffer(size));
    await this.readInto(sha256, bytes);
    return bytes;
  }

  /**
   * Reads the blob into `target`, which must be exactly its size: a caller that reads many blobs of one size (a
   * round's encrypted updates) reuses one buffer instead of leaving one per blob for the garbage collector.
   */
  async readInto(sha256: string, target: Uint8Array): Promise<void> {
    const handle = await openBlob(this.pathOf(sha256), sha256);
    try {
      const { size } = await handle.stat();
      if (size !== target.byteLength) throw new Error(`blob ${sha256} holds ${size} bytes, not the ${target.byteLength} expected`);
      for (let at = 0; at < size; ) {
        const { bytesRead } = await handle.read(target, at, Math.min(READ_CHUNK_BYTES * 16, size - at), at);
        if (bytesRead === 0) throw new Error(`blob ${sha256} ended after ${at} of ${size} bytes`);
        at += bytesRead;
      }
    } finally {
      await handle.close();
    }
  }

  /** Throws when a blob could not be written now (a read-only or full disk): what the health check asks. */
  async checkWritable(): Promise<void> {
    const tmpDir = join(this.rootDir, 'tmp');
    await mkdir(tmpDir, { recursive: true, mode: 0o700 });
    const probe = join(tmpDir, `health-${randomBytes(6).toString('hex')}`);
    const handle = await open(probe, 'wx', 0o600);
    try {
      await handle.writeFile('ok');
      await handle.sync();
    } finally {
      await handle.close();
      await rm(probe, { force: true });
    }
  }

  /** Deletes a blob nothing refers to (a refused upload's bytes); a missing one is fine. */
  async remove(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  async has(sha256: string): Promise<boolean> {
    return pathExists(this.pathOf(sha256));
  }

  /** Size in bytes, or undefined when the blob is absent. */
  async size(sha256: string): Promise<number | undefined> {
    try {
      return (await stat(this.pathOf(sha256))).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /**
   * Streams the blob from byte `start` (default 0). The hash is checked synchronously (throws
   * InvalidSha256Error); a missing blob surfaces as a BlobNotFoundError 'error' event on the stream.
   */
  createReadStream(sha256: string, options: { start?: number } = {}): Readable {
    const path = this.pathOf(sha256);
    const start = options.start ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`start must be a whole number >= 0, got ${start}`);
    return Readable.from(readChunks(path, sha256, start), { objectMode: false });
  }
}

async function* chunksOf(source: BlobSource): AsyncIterable<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  yield* source;
}

async function writeFully(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await handle.write(chunk, offset, chunk.byteLength - offset);
    offset += bytesWritten;
  }
}

async function openBlob(path: string, sha256: string): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDONLY);
  } catch (error) {
    throw notFoundOr(error, sha256);
  }
}

async function* readChunks(path: string, sha256: string, start: number): AsyncGenerator<Buffer> {
  const handle = await openBlob(path, sha256);
  try {
    let position = start;
    for (;;) {
      // A fresh buffer per chunk: consumers may keep chunks after we read the next one.
      const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield bytesRead === buffer.byteLength ? buffer : buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

function notFoundOr(error: unknown, sha256: string): unknown {
  return (error as NodeJS.ErrnoException).code === 'ENOENT' ? new BlobNotFoundError(sha256) : error;
}
