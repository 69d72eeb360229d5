import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { assertStudyId, replaceFile, SECRET_FILE_MODE } from '@federa/shared';
import { roundPrivacySchema } from '../privacy/account.js';

/** A site's records stay readable by the agent's user only. */
const writeAtomic = (path: string, bytes: Uint8Array): Promise<void> => replaceFile(path, bytes, SECRET_FILE_MODE);

const roundStateSchema = z.object({
  studyId: z.string(),
  round: z.int(),
  status: z.enum(['trained', 'uploaded']),
  baseModelSha256: z.string(),
  /**
   * The hash of the global model (and server optimizer state) the update was trained from, as this site decrypted it,
   * which the upload names so the coordinator can check every site trained from the same; absent for round 1 and in a
   * state written before the check.
   */
  baseStateSha256: z.string().optional(),
  updateSha256: z.string(),
  vectorLength: z.int(),
  encoding: z.int(),
  samples: z.int(),
  trainLoss: z.number(),
  trainAccuracy: z.number(),
  validationLoss: z.number().nullable(),
  validationAccuracy: z.number().nullable(),
  validationSamples: z.int(),
  backend: z.string(),
  trainSeconds: z.number(),
  /** Threads the gradients were computed on (absent in a state written before data-parallel training). */
  trainThreads: z.int().min(1).optional(),
  receipt: z
    .object({ sha256: z.string(), receivedBytes: z.number(), receivedAtUnixMs: z.number() })
    .optional(),
  /** Differential privacy: what the update releases, as the ledger records it with the update. */
  privacy: roundPrivacySchema.optional(),
  /** A statistics round: the update is this site's statistics vector (float64), not a trained model's. */
  statistics: z.literal(true).optional(),
  /** Multiparty: the key epoch the stored update is encrypted under, and its signed contribution statement. */
  keyEpoch: z.int().min(1).optional(),
  contribution: z.object({ statementJson: z.string(), signature: z.string(), certificatePem: z.string() }).strict().optional(),
});

export type RoundState = z.output<typeof roundStateSchema>;

/**
 * What this site did for each round, on disk: the exact update bytes it produced (kept, so an interrupted
 * upload is resent rather than retrained, and an auditor can see what left) and whether the coordinator
 * acknowledged them. A round whose state says "uploaded" is never trained again.
 */
export class RoundStateStore {
  constructor(private readonly stateDir: string) {}

  private dir(studyId: string, round: number): string {
    return join(this.stateDir, 'rounds', assertStudyId(studyId, 'round state'), String(round));
  }

  updatePath(studyId: string, round: number): string {
    return join(this.dir(studyId, round), 'update.bin');
  }

  /**
   * The round's state, or undefined when this site never trained it. Only a missing file means that: a file that
   * cannot be read or parsed is an error, never taken as "not trained" (which would retrain and overwrite an
   * uploaded round).
   */
  async read(studyId: string, round: number): Promise<RoundState | undefined> {
    const path = join(this.dir(studyId, round), 'state.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read the round state ${path}: ${(error as Error).message}`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new Error(`round state ${path} is corrupt (not JSON); move it aside to retrain the round`);
    }
    const parsed = roundStateSchema.safeParse(raw);
    if (!parsed.success) {
      throw new Error(`round state ${path} is corrupt: ${parsed.error.issues[0]?.message}; move it aside to retrain the round`);
    }
    return parsed.data;
  }

  /** The clear update vector kept beside an encrypted one (to encrypt it again when its round moves to a new key epoch). */
  async readPlainUpdate(studyId: string, round: number): Promise<Float32Array> {
    const bytes = await readFile(this.plainUpdatePath(studyId, round));
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }

  async readUpdate(studyId: string, round: number): Promise<Uint8Array> {
    return readFile(this.updatePath(studyId, round));
  }

  /** The clear update vector behind an encrypted upload: it never leaves the site; auditors compare against it. */
  plainUpdatePath(studyId: string, round: number): string {
    return join(this.dir(studyId, round), 'update.plain.f32');
  }

  async saveTrained(state: RoundState, update: Uint8Array, plainVector?: Uint8Array): Promise<void> {
    const dir = this.dir(state.studyId, state.round);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeAtomic(this.updatePath(state.studyId, state.round), update);
    if (plainVector) await writeAtomic(this.plainUpdatePath(state.studyId, state.round), plainVector);
    await writeAtomic(join(dir, 'state.json'), Buffer.from(JSON.stringify(state, null, 2)));
  }

  async markUploaded(state: RoundState, receipt: NonNullable<RoundState['receipt']>): Promise<RoundState> {
    const next: RoundState = { ...state, status: 'uploaded', receipt };
    await writeAtomic(join(this.dir(state.studyId, state.round), 'state.json'), Buffer.from(JSON.stringify(next, null, 2)));
    return next;
  }
}
