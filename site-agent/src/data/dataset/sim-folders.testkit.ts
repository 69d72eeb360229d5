import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { generateConsortium, type GeneratedSet } from '../../sim/consortium.js';

/** A generated hospital's files, and fresh data folders assembled from them and from bytes a test writes. */
export interface SimFolders {
  /** The generated site (hospital-a: 64 x 64 CT, so RT Structure Sets can be placed on it). */
  site(): GeneratedSet;
  /** A generated image and its lesion SEG, by index. */
  member(i: number): GeneratedSet['members'][number];
  /** A fresh data folder holding the given files: [path in the folder, bytes or a generated file to copy]. */
  folder(files: ReadonlyArray<readonly [string, Uint8Array | string]>): Promise<string>;
}

/** Generates one simulated site before the file's tests and removes everything after them. */
export function useSimFolders(prefix: string, options: { imagesPerSite: number; seed: number }): SimFolders {
  let root: string | undefined;
  let generated: GeneratedSet | undefined;
  let counter = 0;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
    const summary = await generateConsortium({ outDir: join(root, 'sim'), sites: 1, holdoutImages: 0, ...options });
    generated = summary.sites[0];
  });
  afterAll(async () => {
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });
  const site = (): GeneratedSet => {
    if (generated === undefined) throw new Error('the simulated site has not been generated yet');
    return generated;
  };
  return {
    site,
    member: (i) => {
      const m = site().members[i];
      if (m === undefined) throw new Error(`no member ${i}`);
      return m;
    },
    folder: async (files) => {
      const dir = join(root ?? '', `case-${++counter}`);
      for (const [path, content] of files) {
        await mkdir(dirname(join(dir, path)), { recursive: true });
        if (typeof content === 'string') await cp(join(site().dir, content), join(dir, path));
        else await writeFile(join(dir, path), content);
      }
      return dir;
    },
  };
}
