import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { createLogger, replaceFile, SECRET_FILE_MODE } from '@federa/shared';
import type { ImageIdentity } from './labels.js';

const log = createLogger('site-agent.tensor-cache');

/**
 * One entry: "FTC3", meta length (u32 LE), float count (u32 LE), SHA-256 over the key, meta and payload, then
 * the meta JSON and the float32 LE payload. The checksum covers the key, so an entry copied under another
 * file's name is caught as well as a torn or bit-flipped one.
 */
const MAGIC = Buffer.from('FTC3', 'latin1');
/**
 * Older formats lack identifiers the current one stores: FTC1 the patient key (its image would go ungrouped by
 * patient in the split), FTC2 the Series Instance UID (a series-keyed labels CSV would find it unlabelled). So
 * they are ordinary misses (recomputed and rewritten), not damage worth a warning.
 */
const STALE_MAGICS = [Buffer.from('FTC1', 'latin1'), Buffer.from('FTC2', 'latin1')];
const HEADER_BYTES = 4 + 4 + 4 + 32;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/**
 * What is stored besides the tensor: the identifiers a UID-keyed labels CSV and the patient grouping need, so a
 * hit needs no decode. The patient is stored as its pseudonym, never as the Patient ID.
 */
const metaSchema = z
  .object({
    sopInstanceUid: z.string().max(64).optional(),
    seriesInstanceUid: z.string().max(64).optional(),
    studyInstanceUid: z.string().max(64).optional(),
    patientKey: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  })
  .strict();

export interface CachedTensor {
  readonly tensor: Float32Array;
  readonly identity: ImageIdentity;
}

export interface TensorCacheStats {
  hits: number;
  misses: number;
  /** Entries that were present but failed their checks; they are recomputed and rewritten. */
  corrupt: number;
  writeErrors: number;
}

/**
 * Preprocessed tensors on disk, keyed by the SHA-256 of the file's bytes and the pipeline hash, so a restarted
 * agent (or a study with the same pipeline) does not decode again. They are derived patient images, so entries
 * are owner-only like every other site record, and nothing read back is trusted without its checksum.
 */
export class TensorCache {
  readonly stats: TensorCacheStats = { hits: 0, misses: 0, corrupt: 0, writeErrors: 0 };
  private readonly folders = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly pipelineHash: string,
    /** Floats every tensor of this pipeline holds (inputSize x inputSize x channels). */
    private readonly tensorLength: number,
  ) {}

  /** Entries of one pipeline share a folder (sharded by hash prefix), so a retired pipeline is one folder to delete. */
  path(fileSha256: string): string {
    return join(this.root, this.pipelineHash, fileSha256.slice(0, 2), `${fileSha256}.f32`);
  }

  async read(fileSha256: string): Promise<CachedTensor | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.path(fileSha256));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: error }, 'tensor cache entry unreadable; recomputing');
      this.stats.misses++;
      return undefined;
    }
    if (STALE_MAGICS.some((stale) => bytes.subarray(0, 4).equals(stale))) {
      this.stats.misses++;
      return undefined;
    }
    const entry = this.decode(fileSha256, bytes);
    if (entry === undefined) {
      this.stats.corrupt++;
      this.stats.misses++;
      log.warn({ entry: this.path(fileSha256) }, 'tensor cache entry failed its checks; recomputing');
      return undefined;
    }
    this.stats.hits++;
    return entry;
  }

  /** Atomic (temporary file, fsync, rename). A failed write costs a later decode, never the round: logged, not thrown. */
  async write(fileSha256: string, entry: CachedTensor): Promise<void> {
    if (entry.tensor.length !== this.tensorLength) throw new RangeError(`tensor has ${entry.tensor.length} values, this pipeline makes ${this.tensorLength}`);
    const path = this.path(fileSha256);
    try {
      const folder = join(this.root, this.pipelineHash, fileSha256.slice(0, 2));
      if (!this.folders.has(folder)) {
        await mkdir(folder, { recursive: true, mode: 0o700 });
        this.folders.add(folder);
      }
      await replaceFile(path, this.encode(fileSha256, entry), SECRET_FILE_MODE);
    } catch (error) {
      this.stats.writeErrors++;
      log.warn({ entry: path, err: error }, 'could not write a tensor cache entry');
    }
  }

  private checksum(fileSha256: string, meta: Uint8Array, payload: Uint8Array): Buffer {
    return createHash('sha256').update(MAGIC).update(this.pipelineHash).update(fileSha256).update(meta).update(payload).digest();
  }

  private encode(fileSha256: string, entry: CachedTensor): Buffer {
    const meta = Buffer.from(JSON.stringify(metaSchema.parse(entry.identity)), 'utf8');
    const payload = Buffer.alloc(entry.tensor.length * 4);
    if (LITTLE_ENDIAN_HOST) payload.set(new Uint8Array(entry.tensor.buffer, entry.tensor.byteOffset, entry.tensor.byteLength));
    else entry.tensor.forEach((v, i) => payload.writeFloatLE(v, i * 4));
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeUInt32LE(meta.length, 4);
    header.writeUInt32LE(entry.tensor.length, 8);
    this.checksum(fileSha256, meta, payload).copy(header, 12);
    return Buffer.concat([header, meta, payload]);
  }

  private decode(fileSha256: string, bytes: Buffer): CachedTensor | undefined {
    if (bytes.length < HEADER_BYTES || !bytes.subarray(0, 4).equals(MAGIC)) return undefined;
    const metaLength = bytes.readUInt32LE(4);
    const count = bytes.readUInt32LE(8);
    if (count !== this.tensorLength || bytes.length !== HEADER_BYTES + metaLength + count * 4) return undefined;
    const meta = bytes.subarray(HEADER_BYTES, HEADER_BYTES + metaLength);
    const payload = bytes.subarray(HEADER_BYTES + metaLength);
    if (!this.checksum(fileSha256, meta, payload).equals(bytes.subarray(12, HEADER_BYTES))) return undefined;
    let identity: z.output<typeof metaSchema>;
    try {
      identity = metaSchema.parse(JSON.parse(meta.toString('utf8')));
    } catch {
      return undefined;
    }
    const tensor = new Float32Array(count);
    if (LITTLE_ENDIAN_HOST) new Uint8Array(tensor.buffer).set(payload);
    else for (let i = 0; i < count; i++) tensor[i] = payload.readFloatLE(i * 4);
    return { tensor, identity };
  }
}
