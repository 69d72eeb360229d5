import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '@federa/shared';
import { mapWithConcurrency } from '../dataset/concurrency.js';
import { DicomWebClient, type DicomWebClientOptions, type InstanceRef } from './client.js';
import { authorizationHeader, describeAuth } from './credentials.js';
import type { DicomWebSource } from './schema.js';
import { selectPacsInstances, type NotInPacs } from './select.js';

const log = createLogger('site-agent.pacs');

export interface PacsSyncOptions {
  source: DicomWebSource;
  /** Folder of retrieved instances, one `<SOP Instance UID>.dcm` each (under the site's state folder). */
  cacheDir: string;
  /** The labels CSV (data.labels): with query.fromLabels, its UIDs are the selection. */
  labelsCsv?: string | undefined;
  /** Overrides for the client (tests count or fail requests through `fetch`, shorten the backoff). */
  client?: Partial<Pick<DicomWebClientOptions, 'fetch' | 'backoffMs'>>;
  env?: NodeJS.ProcessEnv;
  onProgress?: (done: number, total: number) => void;
}

export interface PacsSyncResult {
  /** The cache folder: the dataset folder the scan and loader read. */
  dir: string;
  /** The selection's files relative to `dir`, sorted: what the scan and loader must look at (not older picks). */
  files: string[];
  /** Instances the query matched. */
  found: number;
  /** Instances retrieved this time. */
  fetched: number;
  /** Instances already in the cache. */
  cached: number;
  /** HTTP requests made, retries included. */
  requests: number;
  /** With query.fromLabels: labelled UIDs the PACS has no instance for (the scan reports their rows as missing-file). */
  notInPacs: NotInPacs[];
}

/** The cache file of an instance; SOP Instance UIDs are validated (digits and dots), so this is a plain name. */
export const cacheFileOf = (sopInstanceUid: string): string => `${sopInstanceUid}.dcm`;

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The client for a configured source, with its credentials read (from their file or variable). */
export async function dicomWebClientFor(source: DicomWebSource, overrides: PacsSyncOptions['client'] = {}, env: NodeJS.ProcessEnv = process.env): Promise<DicomWebClient> {
  return new DicomWebClient({
    url: source.url,
    authorization: await authorizationHeader(source.auth, env),
    authDescription: describeAuth(source.auth),
    timeoutMs: source.timeoutSeconds * 1000,
    retries: source.retries,
    ...overrides,
  });
}

/**
 * Copies the PACS selection into the local cache, retrieving only instances not already there (keyed by SOP
 * Instance UID, so a second run fetches nothing), and returns the selection's files. The cache holds patient
 * images: the folder is owner-only (700) and each file 600, written under a hidden name and renamed, so a run
 * cut short never leaves a half-written instance that a scan would read.
 */
export async function syncPacsSelection(options: PacsSyncOptions): Promise<PacsSyncResult> {
  const { source, cacheDir } = options;
  const client = await dicomWebClientFor(source, options.client, options.env);
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  await chmod(cacheDir, 0o700);
  const { refs, notInPacs } = await selectPacsInstances(client, source, options.labelsCsv);
  const missing: InstanceRef[] = [];
  for (const ref of refs) if (!(await exists(join(cacheDir, cacheFileOf(ref.sopInstanceUid))))) missing.push(ref);
  log.info({ url: source.url, found: refs.length, cached: refs.length - missing.length, toFetch: missing.length, notInPacs: notInPacs.length }, 'PACS selection found');
  let done = 0;
  await mapWithConcurrency(missing, source.concurrency, async (ref) => {
    const bytes = await client.retrieveInstance(ref);
    const file = join(cacheDir, cacheFileOf(ref.sopInstanceUid));
    const partial = join(cacheDir, `.${cacheFileOf(ref.sopInstanceUid)}.${process.pid}.partial`);
    try {
      const handle = await open(partial, 'w', 0o600);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(partial, file);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
    options.onProgress?.(++done, missing.length);
  });
  const files = refs.map((r) => cacheFileOf(r.sopInstanceUid)).sort();
  log.info({ url: source.url, found: refs.length, fetched: missing.length, requests: client.requests }, 'PACS selection cached');
  return { dir: cacheDir, files, found: refs.length, fetched: missing.length, cached: refs.length - missing.length, requests: client.requests, notInPacs };
}
