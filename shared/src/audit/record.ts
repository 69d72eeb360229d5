import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../study/canonical-json.js';

/**
 * The coordinator's audit log: append-only records, each carrying the hash of the one before, so an edit, a
 * deletion, an insertion or a reordering breaks the chain at the record concerned. A record's hash is the
 * SHA-256 of the canonical JSON of every field but `hash` itself.
 */
export const AUDIT_GENESIS_HASH = '0'.repeat(64);

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256');

/**
 * Who caused a record: `token:<id>` (a REST caller), `site:<id>` (a site over gRPC), `anonymous` (a REST caller
 * without valid credentials), `system` (the coordinator itself) or `cli` (an offline administrative command).
 */
export const auditActorSchema = z
  .string()
  .max(200)
  .regex(/^(token:[A-Za-z0-9_-]{1,64}|site:[a-z0-9][a-z0-9-]{0,62}|anonymous|system|cli)$/, 'must be token:<id>, site:<id>, anonymous, system or cli');

export const auditRecordBodySchema = z
  .object({
    /** 1, 2, 3, ...: no gaps. */
    seq: z.int().min(1),
    /** ISO 8601 with milliseconds, UTC. */
    at: z.iso.datetime({ precision: 3 }),
    kind: z
      .string()
      .max(64)
      .regex(/^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/, 'must be dotted lower-case words, e.g. study.created'),
    actor: auditActorSchema,
    studyId: z.string().max(200).nullable(),
    round: z.int().min(0).nullable(),
    siteId: z.string().max(63).nullable(),
    details: z.record(z.string(), z.unknown()),
    prevHash: sha256Hex,
  })
  .strict();

export const auditRecordSchema = auditRecordBodySchema.extend({ hash: sha256Hex }).strict();

export type AuditRecordBody = z.output<typeof auditRecordBodySchema>;
export type AuditRecord = z.output<typeof auditRecordSchema>;

export function auditRecordHash(body: AuditRecordBody): string {
  const { seq, at, kind, actor, studyId, round, siteId, details, prevHash } = body;
  return createHash('sha256')
    .update(canonicalJson({ seq, at, kind, actor, studyId, round, siteId, details, prevHash }))
    .digest('hex');
}

/**
 * A signed statement of the chain's head: "record `seq` has hash `hash`", made periodically and at every export
 * with the coordinator's key from its kit. A chain rewritten consistently from some record on (every later hash
 * recomputed) still contradicts the checkpoints signed before the rewrite, and a truncated chain ends before
 * its last checkpoint.
 */
export const auditCheckpointSchema = z
  .object({
    seq: z.int().min(1),
    hash: sha256Hex,
    at: z.iso.datetime({ precision: 3 }),
    consortium: z.string().min(1).max(200),
    /** Upper-case colon-separated SHA-256 of the signing certificate, as OpenSSL prints it. */
    certificateFingerprint: z.string().regex(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, 'must be an upper-case colon-separated SHA-256 fingerprint'),
    /** The coordinator's server certificate at the time; verifiers check it chains to the consortium CA. */
    certificatePem: z.string().min(1).max(16_384),
    /** DER ECDSA over checkpointSignedBody, base64. */
    signature: z.string().min(1).max(1_024),
  })
  .strict();

export type AuditCheckpoint = z.output<typeof auditCheckpointSchema>;

export function checkpointSignedBody(checkpoint: Omit<AuditCheckpoint, 'signature' | 'certificatePem'>): Record<string, unknown> {
  return {
    type: 'federa-audit-checkpoint/1',
    consortium: checkpoint.consortium,
    seq: checkpoint.seq,
    hash: checkpoint.hash,
    at: checkpoint.at,
    certificateFingerprint: checkpoint.certificateFingerprint,
  };
}

/**
 * Site messages the coordinator records with the SHA-256 and size of the message's protobuf bytes, by the
 * kind the site's privacy ledger files them under: reconciliation matches the two by these.
 */
export const AUDIT_KIND_OF_SITE_MESSAGE = {
  registration: 'site.registered',
  'dataset-summary': 'site.dataset-summary',
  metrics: 'site.metrics',
  update: 'update.received',
  evaluation: 'site.evaluation',
  refusal: 'site.refusal',
  'key-share': 'site.key-share',
  'key-envelopes': 'site.key-envelopes',
  'key-switch-share': 'site.key-switch-share',
  statistics: 'site.statistics',
} as const;

export type SiteMessageKind = keyof typeof AUDIT_KIND_OF_SITE_MESSAGE;
export const SITE_MESSAGE_KINDS = Object.keys(AUDIT_KIND_OF_SITE_MESSAGE) as SiteMessageKind[];

/** A site message the coordinator refused: still recorded, with why, so reconciliation can tell it from a loss. */
export const AUDIT_KIND_SITE_MESSAGE_REFUSED = 'site.message-refused';

/** `details` of an audit record for a site message (accepted or refused). */
export const siteMessageDetailsSchema = z
  .object({
    message: z.enum(SITE_MESSAGE_KINDS as [SiteMessageKind, ...SiteMessageKind[]]),
    sha256: sha256Hex.nullable(),
    bytes: z.int().min(0).nullable(),
  })
  .loose();
