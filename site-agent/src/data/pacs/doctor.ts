import { readFile } from 'node:fs/promises';
import type { SiteConfig } from '../../config/index.js';
import { parseLabelsCsv } from '../dataset/labels-csv.js';
import { DicomWebError, type DicomWebClient } from './client.js';
import { PacsCredentialsError } from './credentials.js';
import { selectPacsInstances, type PacsSelection } from './select.js';
import { dicomWebClientFor } from './sync.js';

/** Shaped like a doctor check (doctor/types.ts), kept here so the doctor needs one line for a PACS source. */
export interface PacsCheck {
  name: string;
  ok: boolean;
  detail: string;
  hint?: string;
  warning?: boolean;
}

/**
 * For `doctor` with a dicomweb source: whether the PACS answers a QIDO-RS search with the configured credentials,
 * and whether the labels CSV is keyed by UID (the cache names files by SOP Instance UID, so file keys cannot match).
 * With query.fromLabels it also searches every labelled UID, and names the rows the PACS has nothing for.
 * Nothing is retrieved: that is `data scan`'s job.
 */
export async function checkPacsSource(data: SiteConfig['data'], env: NodeJS.ProcessEnv = process.env): Promise<PacsCheck> {
  const name = 'data (PACS)';
  const source = data.source;
  if (source?.kind !== 'dicomweb') return { name, ok: true, detail: 'not used: data comes from a folder' };
  const unreachable = (error: unknown): PacsCheck => {
    if (error instanceof DicomWebError || error instanceof PacsCredentialsError) {
      return { name, ok: false, detail: error.message, hint: 'fix data.source (url, auth) in site.yaml; `federa-site data scan --config site.yaml` retries and shows the selection' };
    }
    throw error;
  };
  // One quick attempt: doctor reports the state now, it does not wait out a PACS restart.
  const quick = { ...source, retries: 0, timeoutSeconds: Math.min(source.timeoutSeconds, 15) };
  let client: DicomWebClient;
  try {
    client = await dicomWebClientFor(quick, {}, env);
    await client.ping();
  } catch (error) {
    return unreachable(error);
  }
  let labels = 'no labels CSV (data.labels): images can be scanned but not trained on';
  let ok = true;
  if (data.labels !== undefined) {
    try {
      const table = parseLabelsCsv(await readFile(data.labels, 'utf8'), data.labels);
      ok = table.keyedBy !== 'file';
      labels = ok ? `${table.rows.length} labels keyed by ${table.keyedBy}` : `${data.labels} is keyed by file, which cannot match PACS images`;
    } catch (error) {
      return { name, ok: false, detail: (error as Error).message, hint: 'data.labels must be a CSV with a "label" column and "sop_instance_uid", "series_instance_uid" or "study_instance_uid"' };
    }
  }
  if (ok && source.query.fromLabels === true) {
    let selection: PacsSelection;
    try {
      selection = await selectPacsInstances(client, quick, data.labels);
    } catch (error) {
      return unreachable(error);
    }
    const { notInPacs } = selection;
    labels += `, selecting ${selection.refs.length} instances`;
    if (notInPacs.length > 0) {
      const shown = notInPacs.slice(0, 5).map((n) => n.message);
      const more = notInPacs.length > shown.length ? [`... and ${notInPacs.length - shown.length} more`] : [];
      return {
        name,
        ok: true,
        warning: true,
        detail: `PACS at ${source.url} answers DICOMweb searches; ${labels}; ${notInPacs.length} labelled UIDs are not in the PACS:\n  ${[...shown, ...more].join('\n  ')}`,
        hint: 'those rows label nothing: correct their UIDs or remove them from data.labels; the other images are used',
      };
    }
  }
  return {
    name,
    ok,
    detail: `PACS at ${source.url} answers DICOMweb searches; ${labels}`,
    ...(ok ? { hint: 'run `federa-site data scan --config site.yaml` to retrieve the selection and check it' } : { hint: 'key data.labels by sop_instance_uid, series_instance_uid or study_instance_uid' }),
  };
}
