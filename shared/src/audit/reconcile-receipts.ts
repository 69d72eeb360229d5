import type { LedgerEntry } from '../ledger/entry.js';
import { verifyCanonical } from '../pki/signing.js';
import { verifyCertificate } from '../pki/verify.js';
import type { AlteredItem } from './reconcile.js';
import { receiptSignedBody, type UpdateReceipt } from './receipt.js';
import { AUDIT_KIND_OF_SITE_MESSAGE, siteMessageDetailsSchema, type AuditRecord } from './record.js';
import { shortHash } from './verify.js';

/**
 * The coordinator's signed receipts, kept in the site's ledger, are its own word about what it received: each must
 * describe the update entry it acknowledges, carry a signature the consortium CA vouches for, and still agree with
 * the audit record it names. A log that no longer says what the coordinator signed was changed afterwards.
 */
export interface ReceiptFailure {
  ledgerLine: number;
  ledgerSeq: number;
  reason: string;
}

export interface ReceiptCheck {
  verified: number;
  unsigned: number;
  failures: ReceiptFailure[];
  altered: AlteredItem[];
}

const UNSIGNED = 'unsigned (coordinator ran without a kit)';

function fieldProblems(receipt: UpdateReceipt, ledger: LedgerEntry[], refSeq: number): string[] {
  const target = ledger.find((entry) => entry.seq === refSeq);
  if (target === undefined) return [`its refSeq ${refSeq} names no ledger entry`];
  if (target.kind !== 'update') return [`its refSeq ${refSeq} points at a ${target.kind} entry, not an update`];
  const pairs: Array<[string, unknown, unknown]> = [
    ['siteId', receipt.siteId, target.siteId],
    ['studyId', receipt.studyId, target.studyId],
    ['round', receipt.round, target.round],
    ['sha256', receipt.sha256, target.sha256],
    ['receivedBytes', receipt.receivedBytes, target.bytes],
  ];
  return pairs
    .filter(([, said, sent]) => said !== sent)
    .map(([field, said, sent]) => `the receipt says ${field} ${JSON.stringify(said)} but update entry seq ${refSeq} has ${JSON.stringify(sent)}`);
}

/** Null when the signature holds; `verifyCanonical` throws on an unreadable certificate, which is a failure too. */
function signatureProblem(receipt: UpdateReceipt, caPem: string | undefined): string | null {
  let signed: boolean;
  try {
    signed = verifyCanonical(receiptSignedBody(receipt), receipt.signature, receipt.certificatePem);
  } catch (error) {
    return `its signature cannot be checked: ${(error as Error).message}`;
  }
  if (!signed) return 'its signature does not verify with its certificate: the receipt was altered or forged';
  if (caPem !== undefined) {
    const trusted = verifyCertificate(receipt.certificatePem, caPem, { purpose: 'server', at: new Date(receipt.receivedAtUnixMs) });
    if (!trusted.ok) return `its certificate is not trusted: ${trusted.reason}`;
  }
  return null;
}

function auditDisagreement(receipt: UpdateReceipt, siteId: string, record: AuditRecord | undefined): string | null {
  if (record === undefined) return 'is not in the log';
  const problems: string[] = [];
  if (record.kind !== AUDIT_KIND_OF_SITE_MESSAGE.update) problems.push(`is a ${record.kind} record, not ${AUDIT_KIND_OF_SITE_MESSAGE.update}`);
  if (record.siteId !== siteId) problems.push(`is attributed to ${record.siteId ?? 'no site'}, not ${siteId}`);
  const details = siteMessageDetailsSchema.safeParse(record.details);
  const sha256 = details.success ? details.data.sha256 : null;
  if (sha256 !== receipt.sha256) problems.push(`records sha256 ${shortHash(sha256)}, not ${shortHash(receipt.sha256)}`);
  if (record.studyId !== receipt.studyId) problems.push(`names study ${record.studyId ?? '(none)'}, not ${receipt.studyId}`);
  if (record.round !== receipt.round) problems.push(`names round ${record.round ?? '(none)'}, not ${receipt.round}`);
  return problems.length === 0 ? null : problems.join(', ');
}

export function checkReceipts(ledger: LedgerEntry[], siteId: string, audit: AuditRecord[], caPem: string | undefined): ReceiptCheck {
  const result: ReceiptCheck = { verified: 0, unsigned: 0, failures: [], altered: [] };
  const bySeq = new Map<number, AuditRecord>();
  let firstSeq = Number.POSITIVE_INFINITY;
  let lastSeq = Number.NEGATIVE_INFINITY;
  for (const record of audit) {
    if (!bySeq.has(record.seq)) bySeq.set(record.seq, record);
    firstSeq = Math.min(firstSeq, record.seq);
    lastSeq = Math.max(lastSeq, record.seq);
  }

  ledger.forEach((entry, i) => {
    if (entry.kind !== 'receipt' || entry.receipt === undefined || entry.refSeq === undefined) return;
    const receipt = entry.receipt;
    const line = i + 1;
    const problems = fieldProblems(receipt, ledger, entry.refSeq);
    const unsigned = receipt.signature === '';
    let forged = false;
    if (unsigned) {
      // Without a CA to demand signatures against, a development coordinator's unsigned receipt is only noted.
      if (caPem !== undefined) problems.push(UNSIGNED);
      else result.unsigned += 1;
    } else {
      const problem = signatureProblem(receipt, caPem);
      if (problem !== null) problems.push(problem);
      forged = problem !== null;
    }
    for (const reason of problems) result.failures.push({ ledgerLine: line, ledgerSeq: entry.seq, reason });
    if (problems.length === 0 && !unsigned) result.verified += 1;

    // A receipt whose signature fails is not the coordinator's word, so it cannot accuse the coordinator's log.
    if (forged || receipt.auditSeq < firstSeq || receipt.auditSeq > lastSeq) return;
    const record = bySeq.get(receipt.auditSeq);
    const disagreement = auditDisagreement(receipt, siteId, record);
    if (disagreement === null) return;
    const details = record === undefined ? null : siteMessageDetailsSchema.safeParse(record.details);
    result.altered.push({
      kind: 'update',
      studyId: receipt.studyId,
      round: receipt.round,
      ledgerLine: line,
      ledgerSeq: entry.seq,
      auditSeq: receipt.auditSeq,
      ledgerSha256: receipt.sha256,
      auditSha256: details?.success ? details.data.sha256 : null,
      ledgerBytes: receipt.receivedBytes,
      auditBytes: details?.success ? details.data.bytes : null,
      at: entry.at,
      reason:
        `the coordinator signed a receipt for update ${shortHash(receipt.sha256)} (study ${receipt.studyId} round ${receipt.round}) as audit record ` +
        `seq ${receipt.auditSeq}, but that record ${disagreement}: the coordinator's log no longer says what it signed`,
    });
  });
  return result;
}
