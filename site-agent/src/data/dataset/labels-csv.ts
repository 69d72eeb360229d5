import { posix } from 'node:path';
import { z } from 'zod';

/**
 * What a labels CSV is keyed by, named by its header: a file path relative to the data folder, or a DICOM
 * SOP Instance UID (one image), Series Instance UID (every image of the series: PACS exports usually label a
 * scan, which is a series) or Study Instance UID (every image of the study). UIDs are matched against the
 * files' headers at the site and never leave it.
 */
export type LabelKey = 'file' | 'sop_instance_uid' | 'series_instance_uid' | 'study_instance_uid';
export const LABEL_KEYS: readonly LabelKey[] = ['file', 'sop_instance_uid', 'series_instance_uid', 'study_instance_uid'];

/** One labelled key: a normalised POSIX path relative to the dataset directory, or a UID. */
export interface LabelRow {
  readonly key: string;
  readonly label: string;
  /** 1-based line of the row in the CSV, for messages. */
  readonly line: number;
}

export interface LabelsTable {
  readonly keyedBy: LabelKey;
  readonly rows: readonly LabelRow[];
}

export interface LabelsCsvIssue {
  readonly line: number;
  /** Column name when the problem is in one field, undefined for whole-row problems. */
  readonly column: string | undefined;
  readonly message: string;
}

/**
 * The labels file is configuration written by a person, so a malformed one stops the load with every problem
 * listed (line and column), rather than silently training on half the data.
 */
export class LabelsCsvError extends Error {
  override readonly name = 'LabelsCsvError';
  readonly source: string;
  readonly issues: readonly LabelsCsvIssue[];

  constructor(source: string, issues: readonly LabelsCsvIssue[]) {
    const shown = issues.slice(0, MAX_ISSUES_IN_MESSAGE).map((i) => `  line ${i.line}${i.column === undefined ? '' : `, column "${i.column}"`}: ${i.message}`);
    const more = issues.length > MAX_ISSUES_IN_MESSAGE ? [`  ... and ${issues.length - MAX_ISSUES_IN_MESSAGE} more`] : [];
    super([`${source}: invalid labels CSV`, ...shown, ...more].join('\n'));
    this.source = source;
    this.issues = issues;
  }
}

const MAX_ISSUES_IN_MESSAGE = 20;
const HEADER_HELP = 'header must name a "label" column and one key column: "file", "sop_instance_uid", "series_instance_uid" or "study_instance_uid"';

/** Relative path that cannot escape the dataset directory once joined to it. */
const relativeFile = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .transform((value) => posix.normalize(value.replaceAll('\\', '/')))
  .refine((value) => !posix.isAbsolute(value) && !/^[A-Za-z]:/.test(value), 'must be a path relative to the data directory')
  .refine((value) => value !== '..' && !value.startsWith('../'), 'must not point outside the data directory');

/** DICOM UIDs (PS3.5 9.1): digits in dot-separated components, at most 64 characters. */
const uid = z
  .string()
  .trim()
  .min(1, { error: 'must not be empty', abort: true })
  .max(64, 'must be a DICOM UID of at most 64 characters')
  .regex(/^[0-9]+(\.[0-9]+)*$/, 'must be a DICOM UID: digits separated by dots');

const keySchemas: Record<LabelKey, z.ZodType<string, string>> = {
  file: relativeFile,
  sop_instance_uid: uid,
  series_instance_uid: uid,
  study_instance_uid: uid,
};
const labelSchema = z.string().trim().min(1, 'must not be empty');

interface CsvRecord {
  readonly line: number;
  readonly fields: string[];
}

/** RFC 4180 records (quoted fields, "" escapes, CRLF or LF); each record remembers the line it starts on. */
function parseCsvRecords(text: string): { records: CsvRecord[]; unterminatedQuoteLine: number | undefined } {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = '';
  let inQuotes = false;
  let line = 1;
  let recordLine = 1;
  let quoteLine = 0;
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text; // Excel writes a BOM
  const endRecord = () => {
    fields.push(field);
    // A line with nothing on it is not a row; spreadsheets leave trailing blank lines.
    if (!(fields.length === 1 && fields[0]?.trim() === '')) records.push({ line: recordLine, fields });
    fields = [];
    field = '';
  };
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (inQuotes) {
      if (ch === '"') {
        if (body[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          inQuotes = false;
        }
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
    } else if (ch === '"') {
      inQuotes = true;
      quoteLine = line;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && body[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += ch;
    }
  }
  if (inQuotes) return { records, unterminatedQuoteLine: quoteLine };
  if (field !== '' || fields.length > 0) endRecord();
  return { records, unterminatedQuoteLine: undefined };
}

/**
 * Parses and validates a labels CSV whose header names a "label" column and exactly one key column ("file",
 * "sop_instance_uid", "series_instance_uid" or "study_instance_uid"); extra columns are allowed and ignored. Throws LabelsCsvError
 * listing every bad line; does not check labels against class names, because a row with an unknown class is
 * a per-file rejection, not a broken file.
 */
export function parseLabelsCsv(text: string, source = 'labels.csv'): LabelsTable {
  const { records, unterminatedQuoteLine } = parseCsvRecords(text);
  if (unterminatedQuoteLine !== undefined) {
    throw new LabelsCsvError(source, [{ line: unterminatedQuoteLine, column: undefined, message: 'quoted field is never closed' }]);
  }
  const [head, ...rows] = records;
  if (head === undefined) throw new LabelsCsvError(source, [{ line: 1, column: undefined, message: `file is empty; ${HEADER_HELP}, e.g. "file,label"` }]);
  const names = head.fields.map((f) => f.trim().toLowerCase());
  const keys = LABEL_KEYS.filter((k) => names.includes(k));
  const [keyedBy] = keys;
  if (keyedBy === undefined || !names.includes('label')) {
    throw new LabelsCsvError(source, [{ line: head.line, column: undefined, message: `${HEADER_HELP} (found "${head.fields.join(',')}")` }]);
  }
  if (keys.length > 1) {
    throw new LabelsCsvError(source, [
      { line: head.line, column: undefined, message: `header has key columns ${keys.map((k) => `"${k}"`).join(' and ')}; a labels file is keyed one way only` },
    ]);
  }
  const keyIndex = names.indexOf(keyedBy);
  const labelIndex = names.indexOf('label');

  const issues: LabelsCsvIssue[] = [];
  const result: LabelRow[] = [];
  const firstLineOf = new Map<string, number>();
  for (const record of rows) {
    if (record.fields.length !== head.fields.length) {
      issues.push({ line: record.line, column: undefined, message: `expected ${head.fields.length} fields, found ${record.fields.length}` });
      continue;
    }
    const key = keySchemas[keyedBy].safeParse(record.fields[keyIndex]);
    const label = labelSchema.safeParse(record.fields[labelIndex]);
    if (!key.success) for (const issue of key.error.issues) issues.push({ line: record.line, column: keyedBy, message: issue.message });
    if (!label.success) for (const issue of label.error.issues) issues.push({ line: record.line, column: 'label', message: issue.message });
    if (!key.success || !label.success) continue;
    const earlier = firstLineOf.get(key.data);
    if (earlier !== undefined) {
      issues.push({ line: record.line, column: keyedBy, message: `"${key.data}" is already labelled on line ${earlier}` });
      continue;
    }
    firstLineOf.set(key.data, record.line);
    result.push({ key: key.data, label: label.data, line: record.line });
  }
  if (issues.length > 0) throw new LabelsCsvError(source, issues);
  return { keyedBy, rows: result };
}
