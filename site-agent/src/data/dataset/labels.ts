import { readFile } from 'node:fs/promises';
import { basename, relative, resolve, sep } from 'node:path';
import type { ImageSource } from '../preprocess/preprocess.js';
import { isRasterImage } from '../preprocess/preprocess.js';
import { parseLabelsCsv, type LabelKey } from './labels-csv.js';

/**
 * How a site's files get their class: a labels CSV (keyed by file path, SOP, Series or Study Instance UID)
 * or, without one, the first folder under the data folder (`normal/a.dcm` is class "normal").
 */
export type DatasetLayout = { readonly kind: 'labels-csv'; readonly path: string } | { readonly kind: 'folders' };

/**
 * The identifiers a label may be keyed by, and the patient pseudonym the train/validation split groups by, read
 * from the file itself. They stay at the site.
 */
export interface ImageIdentity {
  readonly sopInstanceUid?: string | undefined;
  readonly seriesInstanceUid?: string | undefined;
  readonly studyInstanceUid?: string | undefined;
  /** Pseudonym of the Patient ID (the header's patientKey); the loader fills it in. */
  readonly patientKey?: string | undefined;
}

export function identityOf(image: ImageSource): ImageIdentity {
  if (isRasterImage(image)) return {};
  return {
    sopInstanceUid: image.header.sopInstanceUid,
    seriesInstanceUid: image.header.seriesInstanceUid,
    studyInstanceUid: image.header.studyInstanceUid,
  };
}

export type LabelLookup = { readonly ok: true; readonly label: string; readonly key: string } | { readonly ok: false; readonly message: string };

/** A key listed in the labels CSV that no file answered to. */
export interface UnmatchedLabel {
  /** Where the row is, e.g. `labels.csv:12`, standing in for a file name in reports. */
  readonly where: string;
  readonly message: string;
}

type UidKey = Exclude<LabelKey, 'file'>;

/** Per UID key: the identity field a file is matched by, and the tag as messages name it. */
const UID_KEYS: Readonly<Record<UidKey, { readonly field: 'sopInstanceUid' | 'seriesInstanceUid' | 'studyInstanceUid'; readonly tag: string }>> = {
  sop_instance_uid: { field: 'sopInstanceUid', tag: 'SOP Instance UID (0008,0018)' },
  series_instance_uid: { field: 'seriesInstanceUid', tag: 'Series Instance UID (0020,000E)' },
  study_instance_uid: { field: 'studyInstanceUid', tag: 'Study Instance UID (0020,000D)' },
};

function isUidKey(key: LabelKey | 'folder'): key is UidKey {
  return Object.hasOwn(UID_KEYS, key);
}

export class DatasetLabels {
  private readonly byKey: ReadonlyMap<string, { label: string; line: number }>;
  private readonly matched = new Set<string>();

  private constructor(
    /** 'folder' for the folder-per-class layout. */
    readonly keyedBy: LabelKey | 'folder',
    rows: ReadonlyArray<{ key: string; label: string; line: number }>,
    /** The labels CSV as it should be named in messages. */
    private readonly source: string,
    /** The CSV's path relative to the data folder when it lies inside it, so listings can skip it. */
    readonly csvInsideDir: string | undefined,
  ) {
    this.byKey = new Map(rows.map((r) => [r.key, { label: r.label, line: r.line }]));
  }

  /** Reads the layout's labels; a malformed CSV throws LabelsCsvError (a person must fix it). */
  static async open(dir: string, layout: DatasetLayout): Promise<DatasetLabels> {
    if (layout.kind === 'folders') return new DatasetLabels('folder', [], 'the class folders', undefined);
    const csvPath = resolve(layout.path);
    const table = parseLabelsCsv(await readFile(csvPath, 'utf8'), layout.path);
    const inside = relative(resolve(dir), csvPath).split(sep).join('/');
    return new DatasetLabels(table.keyedBy, table.rows, layout.path, inside.startsWith('../') ? undefined : inside);
  }

  /** Labels keyed by UID are only known once the file's header has been read. */
  get needsIdentity(): boolean {
    return isUidKey(this.keyedBy);
  }

  /** Files the CSV names (file-keyed only), so the loader can report listed files that are missing. */
  listedFiles(): string[] {
    return this.keyedBy === 'file' ? [...this.byKey.keys()] : [];
  }

  /** The label of a file by its path (file-keyed CSV or folders); undefined when it needs the file's identity. */
  labelForPath(file: string): LabelLookup | undefined {
    if (this.keyedBy === 'folder') {
      const slash = file.indexOf('/');
      if (slash < 0) return { ok: false, message: `${file}: not inside a class folder (data.layout is folders: each class is a folder under the data folder)` };
      const label = file.slice(0, slash);
      return { ok: true, label, key: label };
    }
    if (this.keyedBy !== 'file') return undefined;
    return this.lookup(file, `${file}: no row in ${this.source}`);
  }

  /** The label of a decoded file by the UID its CSV is keyed on. */
  labelForIdentity(file: string, identity: ImageIdentity): LabelLookup {
    if (!isUidKey(this.keyedBy)) throw new Error(`labels keyed by ${this.keyedBy} are looked up by path`);
    const { field, tag } = UID_KEYS[this.keyedBy];
    const uid = identity[field];
    if (uid === undefined) return { ok: false, message: `${file}: has no ${tag} to find its row in ${this.source}; PNG/JPEG files must be labelled by file path` };
    return this.lookup(uid, `${file}: its ${tag} ${uid} has no row in ${this.source}`);
  }

  private lookup(key: string, missing: string): LabelLookup {
    const row = this.byKey.get(key);
    if (row === undefined) return { ok: false, message: missing };
    this.matched.add(key);
    return { ok: true, label: row.label, key };
  }

  /** UID rows no file matched, after every file has been looked up (file-keyed rows are checked on disk). */
  unmatchedUidRows(): UnmatchedLabel[] {
    if (!isUidKey(this.keyedBy)) return [];
    const { tag } = UID_KEYS[this.keyedBy];
    const name = basename(this.source);
    return [...this.byKey.entries()]
      .filter(([key]) => !this.matched.has(key))
      .map(([key, row]) => ({ where: `${name}:${row.line}`, message: `${this.source} line ${row.line}: no decodable file has ${tag} ${key}` }));
  }
}
