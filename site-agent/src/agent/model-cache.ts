import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertStudyId, bytesToFloat32, float32ToBytes, replaceFile, SECRET_FILE_MODE } from '@federa/shared';

/**
 * Global weights after each round, as this site decrypted them. In an encrypted study only key holders can
 * compute them, so the site keeps each one: the next round starts from it, and a completed study's last one is
 * the consortium's model, ready for the hospital to use.
 */
export class ModelCache {
  constructor(private readonly stateDir: string) {}

  path(studyId: string, round: number): string {
    return join(this.stateDir, 'models', assertStudyId(studyId, 'model cache'), `${round}.f32`);
  }

  async read(studyId: string, round: number): Promise<Float32Array | undefined> {
    try {
      return bytesToFloat32(await readFile(this.path(studyId, round)), `cached model ${studyId}/${round}`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async write(studyId: string, round: number, weights: Float32Array): Promise<string> {
    const path = this.path(studyId, round);
    await mkdir(join(this.stateDir, 'models', assertStudyId(studyId, 'model cache')), { recursive: true, mode: 0o700 });
    await replaceFile(path, float32ToBytes(weights), SECRET_FILE_MODE);
    return path;
  }
}
