import { mkdtemp, readdir, readFile, rm, stat, writeFile, copyFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TensorCache } from './tensor-cache.js';

const FILE_A = 'a'.repeat(64);
const FILE_B = 'b'.repeat(64);
const PIPELINE = 'c'.repeat(64);

describe('TensorCache', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'federa-tensor-cache-'));
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  const tensor = Float32Array.from([0, 0.25, -1.5, 1e-7, 3]);
  const identity = { sopInstanceUid: '1.2.3.4', seriesInstanceUid: '1.2.3.9', studyInstanceUid: '1.2.3' };

  it('reads back exactly what it wrote, owner-only, with no temporary file left behind', async () => {
    const cache = new TensorCache(root, PIPELINE, tensor.length);
    expect(await cache.read(FILE_A)).toBeUndefined();
    await cache.write(FILE_A, { tensor, identity });
    const entry = await cache.read(FILE_A);
    expect(Array.from(entry?.tensor ?? [])).toEqual(Array.from(tensor));
    expect(entry?.identity).toEqual(identity);
    expect(cache.stats).toEqual({ hits: 1, misses: 1, corrupt: 0, writeErrors: 0 });
    expect((await stat(cache.path(FILE_A))).mode & 0o777).toBe(0o600);
    expect(await readdir(dirname(cache.path(FILE_A)))).toEqual([`${FILE_A}.f32`]);
  });

  it('detects a flipped bit, a truncated entry and an entry filed under another file, and recomputes', async () => {
    const cache = new TensorCache(root, PIPELINE, tensor.length);
    await cache.write(FILE_A, { tensor, identity });
    const good = await readFile(cache.path(FILE_A));

    const flipped = Buffer.from(good);
    flipped[flipped.length - 3] = (flipped[flipped.length - 3] ?? 0) ^ 0x10;
    await writeFile(cache.path(FILE_A), flipped);
    expect(await cache.read(FILE_A)).toBeUndefined();

    await writeFile(cache.path(FILE_A), good.subarray(0, good.length - 4));
    expect(await cache.read(FILE_A)).toBeUndefined();

    await writeFile(cache.path(FILE_A), Buffer.alloc(0));
    expect(await cache.read(FILE_A)).toBeUndefined();

    // A well-formed entry under the wrong name: the checksum covers the key.
    await mkdir(dirname(cache.path(FILE_B)), { recursive: true });
    await writeFile(cache.path(FILE_A), good);
    await copyFile(cache.path(FILE_A), cache.path(FILE_B));
    expect(await cache.read(FILE_B)).toBeUndefined();
    expect(await cache.read(FILE_A)).toBeDefined();
    expect(cache.stats.corrupt).toBe(4);

    // Rewriting repairs it.
    await cache.write(FILE_B, { tensor, identity: {} });
    expect((await cache.read(FILE_B))?.identity).toEqual({});
  });

  it('keeps pipelines apart and refuses a tensor of the wrong length', async () => {
    const one = new TensorCache(root, PIPELINE, tensor.length);
    const other = new TensorCache(root, 'd'.repeat(64), tensor.length);
    await one.write(FILE_A, { tensor, identity });
    expect(await other.read(FILE_A)).toBeUndefined();
    expect(other.stats).toMatchObject({ misses: 1, corrupt: 0 });
    // Same folder, different tensor size (as if inputSize changed without the hash changing): not trusted.
    const longer = new TensorCache(root, PIPELINE, tensor.length + 1);
    expect(await longer.read(FILE_A)).toBeUndefined();
    expect(longer.stats.corrupt).toBe(1);
    await expect(longer.write(FILE_A, { tensor, identity })).rejects.toThrow(RangeError);
  });

  it('keeps the patient pseudonym, and treats entries from before it (FTC1) or the series UID (FTC2) as plain misses', async () => {
    const cache = new TensorCache(root, PIPELINE, tensor.length);
    const withPatient = { ...identity, patientKey: 'e'.repeat(64) };
    await cache.write(FILE_A, { tensor, identity: withPatient });
    expect((await cache.read(FILE_A))?.identity).toEqual(withPatient);

    // Same entry as a previous format wrote it: its identity could lack a patient or a series, so it is recomputed.
    for (const stale of ['FTC1', 'FTC2']) {
      const entry = await readFile(cache.path(FILE_A));
      entry.write(stale, 0, 'latin1');
      await writeFile(cache.path(FILE_A), entry);
      const before = { ...cache.stats };
      expect(await cache.read(FILE_A)).toBeUndefined();
      expect(cache.stats).toEqual({ ...before, misses: before.misses + 1 });
    }

    // Only a pseudonym is stored: anything that is not a SHA-256 hex is refused rather than written.
    await cache.write(FILE_B, { tensor, identity: { patientKey: 'MRN-4711' } });
    expect(cache.stats.writeErrors).toBe(1);
  });

  it('counts a write it could not make instead of failing the load', async () => {
    const blocked = join(root, 'blocked');
    await writeFile(blocked, 'not a folder');
    const cache = new TensorCache(blocked, PIPELINE, tensor.length);
    await cache.write(FILE_A, { tensor, identity });
    expect(cache.stats.writeErrors).toBe(1);
  });
});
