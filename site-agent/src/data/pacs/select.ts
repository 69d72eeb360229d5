import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { createLogger } from '@federa/shared';
import { SiteConfigError } from '../../config/index.js';
import { mapWithConcurrency } from '../dataset/concurrency.js';
import { LabelsCsvError, parseLabelsCsv, type LabelsTable } from '../dataset/labels-csv.js';
import { UID_LEVELS, type DicomWebClient, type InstanceRef, type UidLevel } from './client.js';
import type { DicomWebFilters, DicomWebSource } from './schema.js';

const log = createLogger('site-agent.pacs');

/** A labelled UID the PACS has no instance for (that also matches the query's modality and dates). */
export interface NotInPacs {
  /** The CSV row, e.g. `labels.csv:12`, as the scan report names label rows. */
  where: string;
  keyedBy: UidLevel;
  uid: string;
  message: string;
}

export interface PacsSelection {
  /** Instances selected, each once, sorted by SOP Instance UID. */
  refs: InstanceRef[];
  /** fromLabels only: the CSV rows the PACS had nothing for, in CSV order. */
  notInPacs: NotInPacs[];
  /** fromLabels only: what the CSV is keyed by. */
  keyedBy: UidLevel | undefined;
}

/** The filters in words, for messages: "modality CT, study date 20100101-20151231". */
function describeFilters(filters: DicomWebFilters): string {
  const parts = [
    ...(filters.modality !== undefined ? [`modality ${filters.modality}`] : []),
    ...(filters.studyDateFrom !== undefined || filters.studyDateTo !== undefined ? [`study date ${filters.studyDateFrom ?? ''}-${filters.studyDateTo ?? ''}`] : []),
  ];
  return parts.join(', ');
}

async function readLabels(labelsCsv: string | undefined): Promise<{ keyedBy: UidLevel; rows: ReadonlyArray<{ key: string; line: number }> }> {
  if (labelsCsv === undefined) {
    throw new SiteConfigError('data.source.query.fromLabels needs data.labels: the CSV whose study, series or SOP Instance UIDs select the images');
  }
  let text: string;
  try {
    text = await readFile(labelsCsv, 'utf8');
  } catch (error) {
    throw new SiteConfigError(`cannot read the labels CSV ${labelsCsv} (data.labels), which selects the PACS images: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  let table: LabelsTable;
  try {
    table = parseLabelsCsv(text, labelsCsv);
  } catch (error) {
    // A config problem a person must fix, reported like the rest of site.yaml rather than as a crash.
    if (error instanceof LabelsCsvError) throw new SiteConfigError(error.message);
    throw error;
  }
  const { keyedBy } = table;
  if (keyedBy === 'file') {
    throw new SiteConfigError(
      `${labelsCsv} is keyed by file, which cannot select PACS images (data.source.query.fromLabels): key it by sop_instance_uid, series_instance_uid or study_instance_uid`,
    );
  }
  return { keyedBy, rows: table.rows };
}

/**
 * The instances a dicomweb source selects. With a filter query: one QIDO-RS search (per listed UID). With
 * fromLabels: one search per row of the labels CSV, at the level the CSV is keyed by, at most `concurrency` at
 * once, so unlabelled instances are never found and never retrieved. A labelled UID the PACS lacks is listed in
 * notInPacs rather than failing the selection: one stale row should not stop a site from training on the rest.
 */
export async function selectPacsInstances(client: DicomWebClient, source: DicomWebSource, labelsCsv: string | undefined): Promise<PacsSelection> {
  const { fromLabels, ...filters } = source.query;
  if (fromLabels !== true) return { refs: await client.searchInstances(filters), notInPacs: [], keyedBy: undefined };
  const { keyedBy, rows } = await readLabels(labelsCsv);
  const found = await mapWithConcurrency(rows, source.concurrency, (row) => client.searchByUid(keyedBy, row.key, filters));
  const { tag } = UID_LEVELS[keyedBy];
  const narrowed = describeFilters(filters);
  const name = basename(labelsCsv ?? '');
  const notInPacs: NotInPacs[] = [];
  const bySop = new Map<string, InstanceRef>();
  rows.forEach((row, i) => {
    const refs = found[i] ?? [];
    if (refs.length === 0) {
      notInPacs.push({
        where: `${name}:${row.line}`,
        keyedBy,
        uid: row.key,
        message: `${labelsCsv} line ${row.line}: the PACS at ${source.url} has no instance with ${tag} ${row.key}${narrowed ? ` (with ${narrowed})` : ''}`,
      });
    }
    for (const ref of refs) bySop.set(ref.sopInstanceUid, ref);
  });
  if (notInPacs.length > 0) {
    // Row numbers at warn; the UIDs themselves only at debug, as the site's other logs keep identifiers out.
    log.warn({ notInPacs: notInPacs.length, rows: notInPacs.slice(0, 20).map((n) => n.where) }, 'labelled UIDs the PACS has no instance for; `federa-site doctor` lists them');
    for (const missing of notInPacs) log.debug({ where: missing.where, uid: missing.uid }, missing.message);
  }
  return { refs: [...bySop.values()].sort((a, b) => a.sopInstanceUid.localeCompare(b.sopInstanceUid)), notInPacs, keyedBy };
}
