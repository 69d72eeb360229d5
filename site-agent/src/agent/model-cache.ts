import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  assertStudyId,
  bytesToFloat32,
  decodeServerState,
  encodeServerState,
  float32ToBytes,
  replaceFile,
  SECRET_FILE_MODE,
  type ServerOptimizer,
  type ServerOptimizerState,
} from '@federa/shared';

/**
 * Global weights after each round, as this site decrypted them. In an encrypted study only key holders can
 * compute them, so the site keeps each one: the next round starts from it, and a completed study's last one is
 * the consortium's model, ready for the hospital to use. A study with a server optimizer also keeps the optimizer's
 * state after each round beside its weights: no one else has it, and the next round's step needs it.
 */
export class ModelCache {
  constructor(private readonly stateDir: string) {}

  private dir(studyId: string): string {
    return join(this.stateDir, 'models', assertStudyId(studyId, 'model cache'));
  }

  path(studyId: string, round: number): string {
    return join(this.dir(studyId), `${round}.f32`);
  }

  statePath(studyId: string, round: number): string {
    return join(this.dir(studyId), `${round}.server-state`);
  }

  async read(studyId: string, round: number): Promise<Float32Array | undefined> {
    const bytes = await readIfPresent(this.path(studyId, round));
    return bytes && bytesToFloat32(bytes, `cached model ${studyId}/${round}`);
  }

  async write(studyId: string, round: number, weights: Float32Array): Promise<string> {
    const path = this.path(studyId, round);
    await this.ensureDir(studyId);
    await replaceFile(path, float32ToBytes(weights), SECRET_FILE_MODE);
    return path;
  }

  /** The optimizer state after `round`, or undefined when none is stored; a stored one that does not fit is an error. */
  async readState(studyId: string, round: number, settings: ServerOptimizer, parameters: number): Promise<ServerOptimizerState | undefined> {
    const path = this.statePath(studyId, round);
    const bytes = await readIfPresent(path);
    return bytes && decodeServerState(bytes, settings, parameters, round, `the server optimizer state ${path}`);
  }

  /**
   * Written before its round's weights (each file atomically), so weights on disk mean their state is there too; a
   * process stopped between the two leaves a state without weights, which the round's next computation replaces.
   */
  async writeState(studyId: string, round: number, settings: ServerOptimizer, state: ServerOptimizerState): Promise<void> {
    await this.ensureDir(studyId);
    await replaceFile(this.statePath(studyId, round), encodeServerState(settings, state), SECRET_FILE_MODE);
  }

  statisticsPath(studyId: string, round: number): string {
    return join(this.dir(studyId), `${round}.statistics.json`);
  }

  /** A statistics round's decrypted consortium totals (the report's canonical JSON), or undefined. */
  async readStatistics(studyId: string, round: number): Promise<string | undefined> {
    const bytes = await readIfPresent(this.statisticsPath(studyId, round));
    return bytes && new TextDecoder().decode(bytes);
  }

  /** Written before the round's weights, like an optimizer state: weights on disk mean the statistics are there. */
  async writeStatistics(studyId: string, round: number, json: string): Promise<void> {
    await this.ensureDir(studyId);
    await replaceFile(this.statisticsPath(studyId, round), new TextEncoder().encode(json), SECRET_FILE_MODE);
  }

  private async ensureDir(studyId: string): Promise<void> {
    await mkdir(this.dir(studyId), { recursive: true, mode: 0o700 });
  }
}

async function readIfPresent(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
