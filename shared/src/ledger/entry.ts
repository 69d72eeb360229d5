import { createHash } from 'node:crypto';
import { z } from 'zod';
import { updateReceiptSchema } from '../audit/receipt.js';
import { SITE_MESSAGE_KINDS, type SiteMessageKind } from '../audit/record.js';
import { canonicalJson } from '../study/canonical-json.js';
import { siteIdSchema } from '../study/definition.js';

/**
 * A site's privacy ledger: one JSON line per message the site sends, written and flushed before the bytes leave,
 * each carrying the hash of the line before. `opened` starts a ledger; `receipt` stores the coordinator's signed
 * receipt for an earlier `update` entry (entries are never rewritten, so the receipt is an entry of its own).
 */
export const LEDGER_GENESIS_HASH = '0'.repeat(64);
export const LEDGER_KINDS = ['opened', ...SITE_MESSAGE_KINDS, 'receipt'] as const;
export type LedgerKind = (typeof LEDGER_KINDS)[number];

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256');

/** How an entry's bytes were encrypted: the scheme, the key's fingerprint and the parameters. */
export const ledgerEncryptionSchema = z
  .object({
    /** ckks: the consortium's shared key; ckks-multiparty: an epoch's collective key (keyFingerprint names the epoch). */
    scheme: z.enum(['ckks', 'ckks-multiparty']),
    keyFingerprint: z.string().min(1).max(200),
    parameters: z.record(z.string(), z.unknown()),
  })
  .strict();

const ledgerEntryShape = z
  .object({
    seq: z.int().min(1),
    at: z.iso.datetime({ precision: 3 }),
    siteId: siteIdSchema,
    kind: z.enum(LEDGER_KINDS),
    studyId: z.string().max(200).nullable(),
    round: z.int().min(0).nullable(),
    /** Byte count of exactly what left: the protobuf message, or an update's payload. 0 for opened/receipt. */
    bytes: z.int().min(0),
    /** SHA-256 of those bytes; null for opened/receipt. */
    sha256: sha256Hex.nullable(),
    encrypted: z.boolean(),
    encryption: ledgerEncryptionSchema.nullable(),
    /** What the message was, in words a reader needs (metric kind, refusal reason, ...): never patient data. */
    detail: z.record(z.string(), z.unknown()),
    /** For `receipt`: the seq of the update entry it acknowledges, and the signed receipt. */
    refSeq: z.int().min(1).optional(),
    receipt: updateReceiptSchema.optional(),
    prevHash: sha256Hex,
  })
  .strict();

function checkEntry(entry: z.output<typeof ledgerEntryShape>, ctx: z.RefinementCtx): void {
  const message = (SITE_MESSAGE_KINDS as readonly string[]).includes(entry.kind);
  if (message && entry.sha256 === null) ctx.addIssue({ code: 'custom', path: ['sha256'], message: `is required for a ${entry.kind} entry` });
  if (entry.kind === 'receipt' && (entry.receipt === undefined || entry.refSeq === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['receipt'], message: 'a receipt entry carries receipt and refSeq' });
  }
  if (entry.kind !== 'receipt' && (entry.receipt !== undefined || entry.refSeq !== undefined)) {
    ctx.addIssue({ code: 'custom', path: ['receipt'], message: `only a receipt entry carries a receipt, not ${entry.kind}` });
  }
  if (entry.encrypted !== (entry.encryption !== null)) {
    ctx.addIssue({ code: 'custom', path: ['encryption'], message: 'is given exactly when encrypted is true' });
  }
}

export const ledgerEntryBodySchema = ledgerEntryShape.superRefine(checkEntry);
export const ledgerEntrySchema = ledgerEntryShape.extend({ hash: sha256Hex }).strict().superRefine(checkEntry);

export type LedgerEntryBody = z.output<typeof ledgerEntryBodySchema>;
export type LedgerEntry = LedgerEntryBody & { hash: string };

export function ledgerEntryHash(body: LedgerEntryBody): string {
  const { hash: _ignored, ...rest } = body as LedgerEntryBody & { hash?: string };
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

export function isSiteMessageKind(kind: LedgerKind): kind is SiteMessageKind {
  return (SITE_MESSAGE_KINDS as readonly string[]).includes(kind);
}
