import type { SiteConfig } from '../../config/index.js';
import { syncPacsSelection, type PacsSyncOptions, type PacsSyncResult } from './sync.js';

/** What the scan and the loader read: a folder, and for a PACS source the selection's files within its cache. */
export interface SiteDataset {
  dir: string;
  labelsCsv: string | undefined;
  layout: 'csv' | 'folders';
  /** Undefined for a folder source: every file under dir. */
  files: string[] | undefined;
  /** What the PACS sync did; undefined for a folder source. */
  pacs: PacsSyncResult | undefined;
}

/**
 * The site's dataset as the existing scan and loader take it: a folder source as is; a dicomweb source is first
 * copied into its cache (only instances not there yet), so the same decoding, labels and rejection reasons apply.
 */
export async function prepareSiteDataset(
  data: SiteConfig['data'],
  options: Pick<PacsSyncOptions, 'client' | 'env' | 'onProgress'> = {},
): Promise<SiteDataset> {
  const base = { dir: data.dir, labelsCsv: data.labels, layout: data.layout };
  if (data.source?.kind !== 'dicomweb') return { ...base, files: undefined, pacs: undefined };
  const pacs = await syncPacsSelection({ source: data.source, cacheDir: data.dir, labelsCsv: data.labels, ...options });
  return { ...base, files: pacs.files, pacs };
}
