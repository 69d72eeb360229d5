import { z } from 'zod';

/**
 * The vocabulary of a site's dataset summary: what may describe a site's data to the coordinator. Every category
 * is from a closed set or a short code, so a summary cannot carry a file name, an identifier or a free-text header
 * value, whatever a site's files contain.
 */

/** Size buckets of an image's larger side, ascending; exact dimensions can single out a device, buckets cannot. */
export const SIZE_BUCKETS = ['<=128', '129-256', '257-512', '513-1024', '1025-2048', '>2048'] as const;
export type SizeBucket = (typeof SIZE_BUCKETS)[number];

const BUCKET_LIMITS = [128, 256, 512, 1024, 2048];

export function sizeBucket(width: number, height: number): SizeBucket {
  const side = Math.max(width, height);
  const index = BUCKET_LIMITS.findIndex((limit) => side <= limit);
  return SIZE_BUCKETS[index < 0 ? SIZE_BUCKETS.length - 1 : index]!;
}

/** Modality of an image whose header has none (or is not DICOM). */
export const NO_MODALITY = '(none)';
/** A modality value that is not one of the standard's defined terms. */
export const OTHER_MODALITY = 'other';

/** Modality (0008,0060) defined terms, current and retired (PS3.3 C.7.3.1.1.1). */
export const DICOM_MODALITIES: readonly string[] = [
  'AR', 'ASMT', 'AU', 'BDUS', 'BI', 'BMD', 'CFM', 'CR', 'CT', 'CTPROTOCOL', 'DG', 'DMS', 'DOC', 'DX', 'ECG', 'EEG', 'EMG',
  'EOG', 'EPS', 'ES', 'FID', 'GM', 'HC', 'HD', 'IO', 'IOL', 'IVOCT', 'IVUS', 'KER', 'KO', 'LEN', 'LS', 'M3D', 'MG', 'MR',
  'NM', 'OAM', 'OCT', 'OP', 'OPM', 'OPT', 'OPTBSV', 'OPTENF', 'OPV', 'OSS', 'OT', 'PA', 'PLAN', 'POS', 'PR', 'PT', 'PX',
  'REG', 'RESP', 'RF', 'RG', 'RTDOSE', 'RTIMAGE', 'RTINTENT', 'RTPLAN', 'RTRAD', 'RTRECORD', 'RTSEGANN', 'RTSTRUCT', 'RWV',
  'SEG', 'SM', 'SMR', 'SR', 'SRF', 'STAIN', 'TEXTUREMAP', 'TG', 'US', 'VA', 'XA', 'XAPROTOCOL', 'XC',
  // Retired terms still found in older archives.
  'AS', 'CD', 'CF', 'CP', 'CS', 'DD', 'DF', 'DM', 'DS', 'EC', 'FA', 'FS', 'LP', 'MA', 'MS', 'OPR', 'ST', 'VF',
];
const KNOWN_MODALITIES = new Set(DICOM_MODALITIES);

/** The category an image's modality is counted under: a defined term, "(none)", or "other" for anything else. */
export function modalityCategory(modality: string | undefined): string {
  const code = modality?.trim().toUpperCase();
  if (!code) return NO_MODALITY;
  return KNOWN_MODALITIES.has(code) ? code : OTHER_MODALITY;
}
/** A transfer syntax outside the DICOM standard's own root (a vendor's private UID is reported only as this). */
export const PRIVATE_TRANSFER_SYNTAX = 'private';
/** Formats of non-DICOM images, in the transfer-syntax column. */
export const IMAGE_FORMATS = ['PNG', 'JPEG', 'other'] as const;

/** Every standard transfer syntax UID lives under this root (PS3.6 Annex A). */
const STANDARD_TRANSFER_SYNTAX = /^1\.2\.840\.10008\.1\.2(\.\d{1,6}){0,3}$/;

/** The category a transfer syntax UID is counted under. */
export function transferSyntaxCategory(uid: string): string {
  return STANDARD_TRANSFER_SYNTAX.test(uid) ? uid : PRIVATE_TRANSFER_SYNTAX;
}

/** Rejection reasons are kebab-case codes, never messages. */
const REASON = /^[a-z][a-z0-9-]{0,39}$/;
/** Far more categories than any real dataset has in one column; bounds a hostile message. */
const MAX_CATEGORIES = 256;

const CATEGORY_MAPS = ['byClass', 'byModality', 'byTransferSyntax', 'bySize', 'rejectedByReason'] as const;
type CategoryMap = (typeof CATEGORY_MAPS)[number];

/** What each map's category names may be; class names are checked against the study by the caller. */
const CATEGORY_RULES: Record<CategoryMap, { valid: (name: string) => boolean; expected: string }> = {
  byClass: { valid: (name) => name.length > 0 && name.length <= 64, expected: 'a class name of 1 to 64 characters' },
  byModality: {
    valid: (name) => name === NO_MODALITY || name === OTHER_MODALITY || KNOWN_MODALITIES.has(name),
    expected: `a DICOM modality defined term, "${NO_MODALITY}" or "${OTHER_MODALITY}"`,
  },
  byTransferSyntax: {
    valid: (name) =>
      name === PRIVATE_TRANSFER_SYNTAX || (IMAGE_FORMATS as readonly string[]).includes(name) || STANDARD_TRANSFER_SYNTAX.test(name),
    expected: `a standard transfer syntax UID, "${PRIVATE_TRANSFER_SYNTAX}" or one of ${IMAGE_FORMATS.join(', ')}`,
  },
  bySize: { valid: (name) => (SIZE_BUCKETS as readonly string[]).includes(name), expected: `one of ${SIZE_BUCKETS.join(', ')}` },
  rejectedByReason: { valid: (name) => REASON.test(name), expected: 'a kebab-case reason code of at most 40 characters' },
};

const count = z.int().min(0).max(0xffff_ffff);
// Keys are checked below, by position: an issue must not echo a bad category name (it could be a file name).
const categoryCounts = z.record(z.string(), z.number());

/**
 * Validates a received summary: category names from the closed sets above, whole counts that add up. Issues name
 * the map and the category's position, never the offending name itself.
 */
export const datasetSummarySchema = z
  .object({
    files: count,
    accepted: count,
    byClass: categoryCounts,
    byModality: categoryCounts,
    byTransferSyntax: categoryCounts,
    bySize: categoryCounts,
    rejectedByReason: categoryCounts,
  })
  .strict()
  .superRefine((s, ctx) => {
    let shapesOk = true;
    for (const map of CATEGORY_MAPS) {
      const entries = Object.entries(s[map]);
      if (entries.length > MAX_CATEGORIES) {
        ctx.addIssue({ code: 'custom', path: [map], message: `has ${entries.length} categories, at most ${MAX_CATEGORIES} are allowed` });
        shapesOk = false;
      }
      entries.forEach(([name, value], i) => {
        if (!CATEGORY_RULES[map].valid(name)) {
          ctx.addIssue({ code: 'custom', path: [map], message: `category ${i + 1} of ${entries.length} is not ${CATEGORY_RULES[map].expected}` });
        }
        if (!count.safeParse(value).success) {
          ctx.addIssue({ code: 'custom', path: [map], message: `count ${i + 1} of ${entries.length} is not a whole number in [0, 2^32)` });
          shapesOk = false;
        }
      });
    }
    if (!shapesOk) return;
    const total = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);
    for (const map of ['byClass', 'byModality', 'byTransferSyntax', 'bySize'] as const) {
      if (total(s[map]) !== s.accepted) {
        ctx.addIssue({ code: 'custom', path: [map], message: `counts ${total(s[map])} images, but accepted is ${s.accepted}` });
      }
    }
    if (s.accepted + total(s.rejectedByReason) !== s.files) {
      ctx.addIssue({
        code: 'custom',
        path: ['files'],
        message: `is ${s.files}, but accepted (${s.accepted}) and rejected (${total(s.rejectedByReason)}) add up to ${s.accepted + total(s.rejectedByReason)}`,
      });
    }
  });

export type DatasetSummary = z.output<typeof datasetSummarySchema>;
