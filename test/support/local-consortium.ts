import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { StudyDefinitionInput } from '@federa/shared';
import { LocalConsortium, type LocalConsortiumOptions, type StudyStatusView } from '../../demo/src/consortium.js';

/**
 * A local consortium (coordinator and real site agents) for one test file: started before its tests, stopped and
 * its folder removed after them. `get()` returns it inside a test.
 */
export function useLocalConsortium(prefix: string, options: Omit<LocalConsortiumOptions, 'workDir'>): { get(): LocalConsortium } {
  let workDir: string | undefined;
  let consortium: LocalConsortium | undefined;
  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), prefix));
    consortium = await LocalConsortium.start({ workDir, ...options });
  }, 180_000);
  afterAll(async () => {
    await consortium?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });
  return {
    get: () => {
      if (!consortium) throw new Error('the local consortium has not started');
      return consortium;
    },
  };
}

/** Creates a study, has every site approve its hash and runs it to its end. */
export async function runApprovedStudy(consortium: LocalConsortium, definition: StudyDefinitionInput, timeoutMs: number): Promise<StudyStatusView & { id: string }> {
  const created = await consortium.createStudy(definition);
  await consortium.approve(created.specHash);
  return { ...(await consortium.runStudy(created.id, timeoutMs)), id: created.id };
}
