import { join, resolve } from 'node:path';
import { z } from 'zod';

/** A DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters. Also safe as a file name in the cache. */
export const dicomUidSchema = z
  .string()
  .max(64, 'must be at most 64 characters (a DICOM UID)')
  .regex(/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/, 'must be a DICOM UID: digits separated by dots, e.g. 1.2.840.113619.2.55');

const dicomDateSchema = z.string().regex(/^\d{8}$/, 'must be a DICOM date YYYYMMDD, e.g. 20240131');

/**
 * Credentials for the PACS, never inline: a file (mode 600, e.g. a mounted secret) or an environment variable
 * holds the password or token, so the site.yaml can be shared and logged without leaking them.
 */
export const dicomWebAuthSchema = z.union(
  [
    z
      .object({
        basic: z
          .object({
            username: z.string().min(1),
            passwordFile: z.string().min(1).optional(),
            passwordEnv: z.string().min(1).optional(),
          })
          .strict()
          .refine((b) => (b.passwordFile === undefined) !== (b.passwordEnv === undefined), 'needs exactly one of passwordFile or passwordEnv'),
      })
      .strict(),
    z.object({ bearerFile: z.string().min(1) }).strict(),
    z.object({ bearerEnv: z.string().min(1) }).strict(),
  ],
  { error: 'must be { basic: { username, passwordFile | passwordEnv } }, { bearerFile } or { bearerEnv }' },
);

export const dicomWebQuerySchema = z
  .object({
    studyInstanceUids: z.array(dicomUidSchema).min(1).optional(),
    seriesInstanceUids: z.array(dicomUidSchema).min(1).optional(),
    modality: z.string().regex(/^[A-Z0-9_ ]{1,16}$/, 'must be a DICOM modality code, e.g. CT, MR, DX').optional(),
    studyDateFrom: dicomDateSchema.optional(),
    studyDateTo: dicomDateSchema.optional(),
    /**
     * Select the UIDs the labels CSV (data.labels) is keyed by: one search per labelled study, series or instance,
     * so unlabelled images are never retrieved. modality and the date range may narrow it further.
     */
    fromLabels: z.boolean().optional(),
  })
  .strict()
  // An empty query would copy the whole PACS into the state folder: the site must say what it trains on.
  .refine(
    (q) => Object.values(q).some((v) => v !== undefined && v !== false),
    'needs at least one filter (studyInstanceUids, seriesInstanceUids, modality, a study date range) or fromLabels: true',
  )
  // The CSV is the UID list in that mode; a second list beside it would leave it unclear which one selects.
  .refine(
    (q) => q.fromLabels !== true || (q.studyInstanceUids === undefined && q.seriesInstanceUids === undefined),
    'fromLabels selects the UIDs of the labels CSV: drop studyInstanceUids and seriesInstanceUids (or list those UIDs in the CSV)',
  )
  .refine((q) => q.studyDateFrom === undefined || q.studyDateTo === undefined || q.studyDateFrom <= q.studyDateTo, 'studyDateFrom must not be after studyDateTo');

export const dicomWebSourceSchema = z
  .object({
    kind: z.literal('dicomweb'),
    /** DICOMweb root, e.g. https://pacs.example.org/dicom-web (QIDO-RS and WADO-RS live below it). */
    url: z
      .url({ protocol: /^https?$/, error: 'must be an http(s) URL, e.g. https://pacs.example.org/dicom-web' })
      .refine((u) => {
        const parsed = new URL(u);
        return parsed.username === '' && parsed.password === '';
      }, 'must not carry credentials (they would end up in logs): use data.source.auth'),
    auth: dicomWebAuthSchema.optional(),
    query: dicomWebQuerySchema,
    /** Per request, retries included separately. */
    timeoutSeconds: z.number().positive().max(3600).default(120),
    /** Further attempts after a network error, timeout or 5xx answer, with exponential backoff. */
    retries: z.int().min(0).max(10).default(4),
    /** Instances retrieved at once; PACS are shared with clinical work, so this stays small. */
    concurrency: z.int().min(1).max(32).default(4),
  })
  .strict();

export const dataSourceSchema = z.discriminatedUnion('kind', [z.object({ kind: z.literal('folder') }).strict(), dicomWebSourceSchema], {
  error: 'kind must be "folder" or "dicomweb"',
});

export type DicomWebAuth = z.output<typeof dicomWebAuthSchema>;
export type DicomWebQuery = z.output<typeof dicomWebQuerySchema>;
/** What the client searches by: the query's filters (fromLabels is resolved into UID searches before it). */
export type DicomWebFilters = Omit<DicomWebQuery, 'fromLabels'>;
export type DicomWebSource = z.output<typeof dicomWebSourceSchema>;
export type DataSource = z.output<typeof dataSourceSchema>;

/** The PACS cache inside the site's state folder: the dataset folder of a dicomweb source. */
export const pacsCacheDir = (stateDir: string): string => join(stateDir, 'pacs-cache');

/** The source with its secret files resolved against the config file's folder. */
export function resolveSourcePaths(source: DataSource, baseDir: string): DataSource {
  if (source.kind !== 'dicomweb' || source.auth === undefined) return source;
  const { auth } = source;
  if ('basic' in auth) {
    const { passwordFile } = auth.basic;
    return passwordFile === undefined ? source : { ...source, auth: { basic: { ...auth.basic, passwordFile: resolve(baseDir, passwordFile) } } };
  }
  return 'bearerFile' in auth ? { ...source, auth: { bearerFile: resolve(baseDir, auth.bearerFile) } } : source;
}
