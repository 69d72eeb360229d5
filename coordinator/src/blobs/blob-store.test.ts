import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobNotFoundError, BlobStore, InvalidSha256Error, isSha256Hex } from './index.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('BlobStore', () => {
  let root: string;
  let store: BlobStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'federa-blobs-'));
    store = new BlobStore(join(root, 'blobs'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('stores bytes under sha256/<aa>/<hash> and reads them back', async () => {
    const bytes = pseudoRandomBytes(10_000, 7);
    const info = await store.put(bytes);
    expect(info).toEqual({ sha256: sha256(bytes), size: 10_000 });
    const path = join(root, 'blobs', 'sha256', info.sha256.slice(0, 2), info.sha256);
    expect(store.pathOf(info.sha256)).toBe(path);
    expect(new Uint8Array(await readFile(path))).toEqual(bytes);
    expect(new Uint8Array(await store.get(info.sha256))).toEqual(bytes);
    expect(await store.has(info.sha256)).toBe(true);
    expect(await store.size(info.sha256)).toBe(10_000);
  });

  it('hashes a chunked async source exactly like the concatenated bytes', async () => {
    const whole = pseudoRandomBytes(700_000, 3);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < whole.length; at += 65_537) yield whole.subarray(at, at + 65_537);
    }
    const fromStream = await store.put(chunks());
    expect(fromStream).toEqual({ sha256: sha256(whole), size: whole.length });
    const fromArray = await store.put([whole.subarray(0, 5), whole.subarray(5)]);
    expect(fromArray).toEqual(fromStream);
  });

  it('is idempotent: the same bytes give the same address, one file, and no leftovers', async () => {
    const bytes = pseudoRandomBytes(4096, 11);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.put(bytes)));
    for (const r of results) expect(r).toEqual(results[0]);
    await store.put(bytes);
    const files = await filesUnder(join(root, 'blobs'));
    expect(files).toEqual([store.pathOf(sha256(bytes))]);
  });

  it('stores the empty blob', async () => {
    expect(await store.put(new Uint8Array(0))).toEqual({ sha256: EMPTY_SHA256, size: 0 });
    expect((await store.get(EMPTY_SHA256)).byteLength).toBe(0);
  });

  it.skipIf(process.platform === 'win32')('makes stored blobs read-only, and blobs and their folders owner-only', async () => {
    const { sha256: hash } = await store.put(new TextEncoder().encode('immutable'));
    expect((await stat(store.pathOf(hash))).mode & 0o777).toBe(0o400);
    expect((await stat(dirname(store.pathOf(hash)))).mode & 0o777).toBe(0o700);
  });

  it('leaves nothing behind when the source fails midway', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield new Uint8Array([1, 2, 3]);
      throw new Error('upload interrupted');
    }
    await expect(store.put(failing())).rejects.toThrow('upload interrupted');
    expect(await filesUnder(join(root, 'blobs'))).toEqual([]);
    expect(await store.has(sha256(new Uint8Array([1, 2, 3])))).toBe(false);
  });

  it('refuses chunks that are not bytes', async () => {
    const bad = ['text'] as unknown as Iterable<Uint8Array>;
    await expect(store.put(bad)).rejects.toThrow(TypeError);
    expect(await filesUnder(join(root, 'blobs'))).toEqual([]);
  });

  it('reports missing blobs as BlobNotFoundError', async () => {
    const missing = sha256(new TextEncoder().encode('never stored'));
    await expect(store.get(missing)).rejects.toBeInstanceOf(BlobNotFoundError);
    expect(await store.has(missing)).toBe(false);
    expect(await store.size(missing)).toBeUndefined();
    await expect(collect(store.createReadStream(missing))).rejects.toBeInstanceOf(BlobNotFoundError);
  });

  it.each([
    ['upper-case hex', EMPTY_SHA256.toUpperCase()],
    ['too short', EMPTY_SHA256.slice(1)],
    ['path traversal', `../../${EMPTY_SHA256.slice(6)}`],
    ['empty', ''],
  ])('rejects a malformed sha256 (%s) before touching the disk', async (_label, value) => {
    expect(isSha256Hex(value)).toBe(false);
    expect(() => store.pathOf(value)).toThrow(InvalidSha256Error);
    await expect(store.get(value)).rejects.toBeInstanceOf(InvalidSha256Error);
    await expect(store.has(value)).rejects.toBeInstanceOf(InvalidSha256Error);
    expect(() => store.createReadStream(value)).toThrow(InvalidSha256Error);
  });

  it('streams a large blob in order, optionally from an offset', async () => {
    const bytes = pseudoRandomBytes(1_000_003, 5);
    const { sha256: hash } = await store.put(bytes);
    expect(sha256(await collect(store.createReadStream(hash)))).toBe(hash);
    const tail = await collect(store.createReadStream(hash, { start: 999_000 }));
    expect(new Uint8Array(tail)).toEqual(bytes.subarray(999_000));
    expect((await collect(store.createReadStream(hash, { start: bytes.length }))).byteLength).toBe(0);
    expect(() => store.createReadStream(hash, { start: -1 })).toThrow(RangeError);
  });
});
