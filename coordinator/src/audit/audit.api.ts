import { z } from 'zod';
import {
  auditCheckpointSchema,
  auditRecordSchema,
  LEDGER_KINDS,
  SITE_MESSAGE_KINDS,
  type AuditVerification,
  type LedgerVerification,
  type ReconcileReport,
} from '@federa/shared';
import { apiSchema, type Expect, type SameShape } from '../openapi/index.js';
import type { AuditRecordsPage, ReconciliationResult } from './audit.controller.js';

/**
 * What the audit routes answer, for the API document: records and checkpoints by the schemas that validate them,
 * the verification reports (plain interfaces in shared) by schemas the checks at the end hold to those interfaces.
 */
const head = z.object({ seq: z.int(), hash: z.string() });
const messageKind = z.enum(SITE_MESSAGE_KINDS);

export const auditRecordApiSchema = apiSchema('AuditRecord', auditRecordSchema);
export const auditCheckpointApiSchema = apiSchema('AuditCheckpoint', auditCheckpointSchema);
export const auditCheckpointsSchema = z.array(auditCheckpointApiSchema);

export const auditRecordsPageSchema = apiSchema(
  'AuditRecordsPage',
  z.object({
    records: z.array(auditRecordApiSchema),
    nextAfterSeq: z.int().nullable().describe('Pass as afterSeq for the next page; null when this page is the last.'),
  }),
);

export const auditVerificationSchema = apiSchema(
  'AuditVerification',
  z.object({
    ok: z.boolean(),
    records: z.int(),
    head: head.nullable(),
    firstBad: z.object({ seq: z.int(), position: z.int(), reason: z.string() }).nullable().describe('The first record that is wrong or missing.'),
    checkpoints: z.object({
      total: z.int(),
      verified: z.int(),
      latest: z.object({ seq: z.int(), at: z.string() }).nullable(),
      failures: z.array(z.object({ seq: z.int(), reason: z.string() })),
    }),
    uncheckpointed: z.int().describe('Records after the latest verified checkpoint: only the hash chain vouches for them.'),
  }),
);

const ledgerProblem = z.object({ line: z.int(), seq: z.int().nullable(), reason: z.string() });

const ledgerVerificationSchema = apiSchema(
  'LedgerVerification',
  z.object({
    ok: z.boolean(),
    path: z.string().nullable(),
    entries: z.int(),
    head: head.nullable(),
    siteId: z.string().nullable(),
    counts: z.record(z.enum(LEDGER_KINDS), z.int()),
    broken: ledgerProblem.nullable(),
    problems: z.array(ledgerProblem),
    receipts: z.array(
      z.object({
        line: z.int(),
        seq: z.int(),
        refSeq: z.int(),
        auditSeq: z.int(),
        studyId: z.string(),
        round: z.int(),
        status: z.enum(['verified', 'unsigned', 'invalid']),
        reason: z.string().nullable(),
      }),
    ),
    unacknowledged: z.array(z.object({ line: z.int(), seq: z.int(), studyId: z.string().nullable(), round: z.int().nullable(), sha256: z.string().nullable() })),
    caChecked: z.boolean(),
  }),
);

const reconcileItem = z.object({
  kind: messageKind,
  studyId: z.string().nullable(),
  round: z.int().nullable(),
  sha256: z.string().nullable(),
  bytes: z.int().nullable(),
  at: z.string(),
  ledgerLine: z.int().nullable(),
  ledgerSeq: z.int().nullable(),
  auditSeq: z.int().nullable(),
  reason: z.string(),
});

const reconcileReportSchema = apiSchema(
  'ReconcileReport',
  z.object({
    ok: z.boolean(),
    siteId: z.string(),
    ledgerEntries: z.int(),
    auditRecords: z.int(),
    auditRange: z.object({ firstSeq: z.int(), lastSeq: z.int(), lastAt: z.string() }).nullable(),
    matched: z.int(),
    refused: z.array(reconcileItem),
    missing: z.array(reconcileItem),
    extra: z.array(reconcileItem),
    altered: z.array(
      z.object({
        kind: messageKind,
        studyId: z.string().nullable(),
        round: z.int().nullable(),
        ledgerLine: z.int(),
        ledgerSeq: z.int(),
        auditSeq: z.int(),
        ledgerSha256: z.string().nullable(),
        auditSha256: z.string().nullable(),
        ledgerBytes: z.int().nullable(),
        auditBytes: z.int().nullable(),
        at: z.string(),
        reason: z.string(),
      }),
    ),
    notCovered: z.array(reconcileItem),
    receipts: z.object({ verified: z.int(), unsigned: z.int(), failures: z.array(z.object({ ledgerLine: z.int(), ledgerSeq: z.int(), reason: z.string() })) }),
  }),
);

export const reconciliationSchema = apiSchema('Reconciliation', z.object({ ledger: ledgerVerificationSchema, reconciliation: reconcileReportSchema }));

/** Compile-time: each schema is exactly the shape its handler returns. */
export type AuditApiChecks = [
  Expect<SameShape<z.output<typeof auditRecordsPageSchema>, AuditRecordsPage>>,
  Expect<SameShape<z.output<typeof auditVerificationSchema>, AuditVerification>>,
  Expect<SameShape<z.output<typeof ledgerVerificationSchema>, LedgerVerification>>,
  Expect<SameShape<z.output<typeof reconcileReportSchema>, ReconcileReport>>,
  Expect<SameShape<z.output<typeof reconciliationSchema>, ReconciliationResult>>,
];
