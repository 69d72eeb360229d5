import { isSiteMessageKind, ledgerEntrySchema, type LedgerEntry } from '../ledger/entry.js';
import { describeIssues } from '../study/definition.js';
import { checkReceipts, type ReceiptFailure } from './reconcile-receipts.js';
import {
  AUDIT_KIND_OF_SITE_MESSAGE,
  AUDIT_KIND_SITE_MESSAGE_REFUSED,
  auditRecordSchema,
  siteMessageDetailsSchema,
  type AuditRecord,
  type SiteMessageKind,
} from './record.js';
import { shortHash } from './verify.js';

/**
 * Reconciliation puts a site's privacy ledger (what it says it sent) next to the coordinator's audit log (what the
 * coordinator says it received), so either party's account can be checked against the other's: a message the
 * coordinator lost or hid, one it invented, and one whose bytes differ between the two all show up by name.
 */
export class ReconcileError extends Error {
  override readonly name = 'ReconcileError';
}

/** A finding; ledger fields are null for an audit record without a ledger entry and vice versa. */
export interface ReconcileItem {
  kind: SiteMessageKind;
  studyId: string | null;
  round: number | null;
  sha256: string | null;
  bytes: number | null;
  /** When the site sent it (ledger side), or when the coordinator recorded it (an extra record). */
  at: string;
  ledgerLine: number | null;
  ledgerSeq: number | null;
  auditSeq: number | null;
  reason: string;
}

/** A message both sides recorded, but not the same bytes. */
export interface AlteredItem {
  kind: SiteMessageKind;
  studyId: string | null;
  round: number | null;
  ledgerLine: number;
  ledgerSeq: number;
  auditSeq: number;
  ledgerSha256: string | null;
  auditSha256: string | null;
  ledgerBytes: number | null;
  auditBytes: number | null;
  at: string;
  reason: string;
}

export interface ReconcileReport {
  /** No missing, extra or altered message and no failed receipt. */
  ok: boolean;
  siteId: string;
  ledgerEntries: number;
  /** The audit records attributed to this site. */
  auditRecords: number;
  /** What the audit extract spans (all sites), or null when it is empty. */
  auditRange: { firstSeq: number; lastSeq: number; lastAt: string } | null;
  matched: number;
  refused: ReconcileItem[];
  missing: ReconcileItem[];
  extra: ReconcileItem[];
  altered: AlteredItem[];
  notCovered: ReconcileItem[];
  receipts: { verified: number; unsigned: number; failures: ReceiptFailure[] };
}

export interface ReconcileOptions {
  /** The site being reconciled; must agree with the ledger's. Required only for an empty ledger. */
  siteId?: string;
  /** The consortium CA: receipts must be signed by a certificate it issued. */
  caPem?: string;
}

/** Site and coordinator clocks are not in lockstep; a message this close to the extract's end still counts as covered. */
const CLOCK_SLACK_MS = 5_000;

const LEDGER_KIND_OF_AUDIT = new Map<string, SiteMessageKind>(
  Object.entries(AUDIT_KIND_OF_SITE_MESSAGE).map(([ledgerKind, auditKind]) => [auditKind, ledgerKind as SiteMessageKind]),
);

interface LedgerMessage {
  entry: LedgerEntry;
  line: number;
  kind: SiteMessageKind;
}

interface AuditMessage {
  record: AuditRecord;
  kind: SiteMessageKind;
  accepted: boolean;
  sha256: string | null;
  bytes: number | null;
  reason: string | null;
  used: boolean;
}

function article(kind: string): string {
  return /^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`;
}

function describeMessage(kind: string, studyId: string | null, round: number | null): string {
  const study = studyId === null ? '' : ` for study ${studyId}`;
  return `${kind}${study}${round === null ? '' : ` round ${round}`}`;
}

function validate(ledger: LedgerEntry[], audit: AuditRecord[]): void {
  const issues: string[] = [];
  ledger.forEach((entry, i) => {
    const parsed = ledgerEntrySchema.safeParse(entry);
    if (!parsed.success) issues.push(...describeIssues(parsed.error).map((issue) => `ledger line ${i + 1}: ${issue}`));
  });
  audit.forEach((record, i) => {
    const parsed = auditRecordSchema.safeParse(record);
    if (!parsed.success) issues.push(...describeIssues(parsed.error).map((issue) => `audit record at position ${i}: ${issue}`));
  });
  if (issues.length > 0) throw new ReconcileError(`cannot reconcile malformed input: ${issues.slice(0, 10).join('; ')}`);
}

function siteOf(ledger: LedgerEntry[], wanted: string | undefined): string {
  const sites = [...new Set(ledger.map((entry) => entry.siteId))];
  if (sites.length > 1) throw new ReconcileError(`the ledger mixes entries of several sites: ${sites.join(', ')}`);
  const site = sites[0];
  if (site !== undefined && wanted !== undefined && site !== wanted) {
    throw new ReconcileError(`the ledger belongs to site "${site}", not "${wanted}"`);
  }
  const siteId = site ?? wanted;
  if (siteId === undefined) throw new ReconcileError('the ledger is empty, so it names no site: pass the site id');
  return siteId;
}

function auditMessageOf(record: AuditRecord): AuditMessage | null {
  const details = siteMessageDetailsSchema.safeParse(record.details);
  const sha256 = details.success ? details.data.sha256 : null;
  const bytes = details.success ? details.data.bytes : null;
  const accepted = LEDGER_KIND_OF_AUDIT.get(record.kind);
  if (accepted !== undefined) return { record, kind: accepted, accepted: true, sha256, bytes, reason: null, used: false };
  // A refusal can only be attributed to a ledger kind through its details.
  if (record.kind !== AUDIT_KIND_SITE_MESSAGE_REFUSED || !details.success) return null;
  const reason = typeof record.details['reason'] === 'string' ? record.details['reason'] : null;
  return { record, kind: details.data.message, accepted: false, sha256, bytes, reason, used: false };
}

/** Queues of audit messages by a key, taken one at a time in audit order so duplicates pair up one to one. */
class Queues {
  private readonly queues = new Map<string, AuditMessage[]>();

  constructor(messages: AuditMessage[], key: (message: AuditMessage) => string) {
    for (const message of messages) {
      const k = key(message);
      const queue = this.queues.get(k);
      if (queue === undefined) this.queues.set(k, [message]);
      else queue.push(message);
    }
  }

  take(key: string): AuditMessage | null {
    const queue = this.queues.get(key);
    while (queue !== undefined && queue.length > 0) {
      const next = queue.shift()!;
      if (!next.used) {
        next.used = true;
        return next;
      }
    }
    return null;
  }
}

const keyOf = (...parts: unknown[]): string => JSON.stringify(parts);

function ledgerItem(message: LedgerMessage, auditSeq: number | null, reason: string): ReconcileItem {
  const { entry } = message;
  return {
    kind: message.kind,
    studyId: entry.studyId,
    round: entry.round,
    sha256: entry.sha256,
    bytes: entry.bytes,
    at: entry.at,
    ledgerLine: message.line,
    ledgerSeq: entry.seq,
    auditSeq,
    reason,
  };
}

function alteredItem(message: LedgerMessage, audit: AuditMessage): AlteredItem {
  const { entry } = message;
  const what = describeMessage(message.kind, entry.studyId, entry.round);
  const differs =
    entry.sha256 !== audit.sha256
      ? `the site sent sha256 ${shortHash(entry.sha256)} (${entry.bytes} bytes) but the coordinator recorded sha256 ${shortHash(audit.sha256)} (${audit.bytes ?? 'unknown'} bytes)`
      : `the sha256 agrees but the site sent ${entry.bytes} bytes and the coordinator recorded ${audit.bytes ?? 'unknown'}`;
  return {
    kind: message.kind,
    studyId: entry.studyId,
    round: entry.round,
    ledgerLine: message.line,
    ledgerSeq: entry.seq,
    auditSeq: audit.record.seq,
    ledgerSha256: entry.sha256,
    auditSha256: audit.sha256,
    ledgerBytes: entry.bytes,
    auditBytes: audit.bytes,
    at: entry.at,
    reason: `${what}: ${differs}`,
  };
}

export function reconcileLedger(ledger: LedgerEntry[], audit: AuditRecord[], options: ReconcileOptions = {}): ReconcileReport {
  validate(ledger, audit);
  const siteId = siteOf(ledger, options.siteId);
  const siteRecords = audit.filter((record) => record.siteId === siteId);
  const auditMessages = siteRecords.map(auditMessageOf).filter((message): message is AuditMessage => message !== null);
  const accepted = auditMessages.filter((message) => message.accepted);
  const ledgerMessages: LedgerMessage[] = [];
  ledger.forEach((entry, i) => {
    if (isSiteMessageKind(entry.kind)) ledgerMessages.push({ entry, line: i + 1, kind: entry.kind });
  });

  let matched = 0;
  const refused: ReconcileItem[] = [];
  const altered: AlteredItem[] = [];
  const pending: LedgerMessage[] = [];

  // Exact matches first, so a resend pairs with its own record before any fuzzier pairing is tried.
  const exact = new Queues(accepted, (m) => keyOf(m.kind, m.sha256, m.record.studyId, m.record.round));
  for (const message of ledgerMessages) {
    const { entry } = message;
    const found = exact.take(keyOf(message.kind, entry.sha256, entry.studyId, entry.round));
    if (found === null) pending.push(message);
    else if (found.bytes !== null && found.bytes !== entry.bytes) altered.push(alteredItem(message, found));
    else matched += 1;
  }

  const refusals = new Queues(
    auditMessages.filter((message) => !message.accepted),
    (m) => keyOf(m.kind, m.sha256),
  );
  const afterRefusals: LedgerMessage[] = [];
  for (const message of pending) {
    const found = refusals.take(keyOf(message.kind, message.entry.sha256));
    if (found === null) {
      afterRefusals.push(message);
      continue;
    }
    const why = found.reason ?? 'no reason recorded';
    const what = describeMessage(message.kind, message.entry.studyId, message.entry.round);
    refused.push(ledgerItem(message, found.record.seq, `${what}, sha256 ${shortHash(message.entry.sha256)}: refused by the coordinator: ${why}`));
  }

  const sameShape = new Queues(accepted, (m) => keyOf(m.kind, m.record.studyId, m.record.round));
  const unmatched: LedgerMessage[] = [];
  for (const message of afterRefusals) {
    const found = sameShape.take(keyOf(message.kind, message.entry.studyId, message.entry.round));
    if (found === null) unmatched.push(message);
    else altered.push(alteredItem(message, found));
  }

  const unanswered = new Set(unmatched);
  const lastAnsweredSeq = Math.max(0, ...ledgerMessages.filter((m) => !unanswered.has(m)).map((m) => m.entry.seq));
  const { missing, notCovered, auditRange } = classifyUnmatched(unmatched, audit, lastAnsweredSeq);
  const extra: ReconcileItem[] = accepted
    .filter((message) => !message.used)
    .map((message) => {
      const { record } = message;
      const what = describeMessage(message.kind, record.studyId, record.round);
      return {
        kind: message.kind,
        studyId: record.studyId,
        round: record.round,
        sha256: message.sha256,
        bytes: message.bytes,
        at: record.at,
        ledgerLine: null,
        ledgerSeq: null,
        auditSeq: record.seq,
        reason:
          `the coordinator recorded ${article(message.kind)} from ${siteId} that the site's ledger does not contain ` +
          `(${what}, sha256 ${shortHash(message.sha256)}, recorded at ${record.at})`,
      };
    });

  const receipts = checkReceipts(ledger, siteId, audit, options.caPem);
  altered.push(...receipts.altered);
  return {
    ok: missing.length === 0 && extra.length === 0 && altered.length === 0 && receipts.failures.length === 0,
    siteId,
    ledgerEntries: ledger.length,
    auditRecords: siteRecords.length,
    auditRange,
    matched,
    refused,
    missing,
    extra,
    altered,
    notCovered,
    receipts: { verified: receipts.verified, unsigned: receipts.unsigned, failures: receipts.failures },
  };
}

/**
 * A ledger message with no audit record at all is missing, unless the extract does not reach it: sent before the
 * extract starts, or after every message the extract answers and at (or within the clock slack of) its end, as when
 * a study still running sends metrics while the extract is being written. A later message that is in the extract
 * makes an earlier one missing whatever the clocks say.
 */
function classifyUnmatched(
  unmatched: LedgerMessage[],
  audit: AuditRecord[],
  lastAnsweredSeq: number,
): { missing: ReconcileItem[]; notCovered: ReconcileItem[]; auditRange: ReconcileReport['auditRange'] } {
  const missing: ReconcileItem[] = [];
  const notCovered: ReconcileItem[] = [];
  const describe = (m: LedgerMessage): string =>
    `${describeMessage(m.kind, m.entry.studyId, m.entry.round)}, sha256 ${shortHash(m.entry.sha256)}, ${m.entry.bytes} bytes, sent at ${m.entry.at}`;
  if (audit.length === 0) {
    for (const m of unmatched) notCovered.push(ledgerItem(m, null, `${describe(m)}; the audit extract is empty`));
    return { missing, notCovered, auditRange: null };
  }
  let first = audit[0]!;
  let last = audit[0]!;
  let lastMs = Date.parse(last.at);
  for (const record of audit) {
    if (record.seq < first.seq) first = record;
    if (record.seq > last.seq) last = record;
    lastMs = Math.max(lastMs, Date.parse(record.at));
  }
  const lastAt = new Date(lastMs).toISOString();
  // An extract that starts at seq 1 covers everything before its end; a later start leaves earlier messages unseen.
  const startMs = first.seq === 1 ? Number.NEGATIVE_INFINITY : Date.parse(first.at) - CLOCK_SLACK_MS;
  for (const m of unmatched) {
    const at = Date.parse(m.entry.at);
    const inTail = m.entry.seq > lastAnsweredSeq;
    if (inTail && at > lastMs + CLOCK_SLACK_MS) {
      notCovered.push(ledgerItem(m, null, `${describe(m)}; after the audit extract ends (its last record is at ${lastAt})`));
    } else if (inTail && at > lastMs - CLOCK_SLACK_MS) {
      notCovered.push(
        ledgerItem(m, null, `${describe(m)}; sent as the audit extract ends (its last record is at ${lastAt}) and after every message it holds: export again to judge it`),
      );
    } else if (at < startMs) {
      notCovered.push(ledgerItem(m, null, `${describe(m)}; before the audit extract starts (at seq ${first.seq}, ${first.at})`));
    } else {
      missing.push(ledgerItem(m, null, `${describe(m)}; the coordinator has no record of it`));
    }
  }
  return { missing, notCovered, auditRange: { firstSeq: first.seq, lastSeq: last.seq, lastAt } };
}

function ledgerWhere(line: number | null, seq: number | null): string {
  return line === null ? '' : `ledger line ${line} (seq ${seq ?? '?'})`;
}

/** A summary line, then one line per finding. */
export function formatReconcileReport(report: ReconcileReport): string {
  const r = report;
  const unsigned = r.receipts.unsigned > 0 ? `, ${r.receipts.unsigned} unsigned` : '';
  const lines = [
    `reconcile site ${r.siteId}: ${r.ok ? 'OK' : 'FAILED'}: ${r.ledgerEntries} ledger entries, ${r.auditRecords} audit records for the site; ` +
      `${r.matched} matched, ${r.refused.length} refused, ${r.missing.length} missing, ${r.extra.length} extra, ${r.altered.length} altered, ` +
      `${r.notCovered.length} not covered; receipts: ${r.receipts.verified} verified, ${r.receipts.failures.length} failed${unsigned}`,
  ];
  for (const item of r.missing) lines.push(`MISSING  ${ledgerWhere(item.ledgerLine, item.ledgerSeq)}: ${item.reason}`);
  for (const item of r.extra) lines.push(`EXTRA    audit seq ${item.auditSeq ?? '?'}: ${item.reason}`);
  for (const item of r.altered) {
    lines.push(`ALTERED  ${ledgerWhere(item.ledgerLine, item.ledgerSeq)} / audit seq ${item.auditSeq}: ${item.reason}`);
  }
  for (const failure of r.receipts.failures) {
    lines.push(`RECEIPT  ${ledgerWhere(failure.ledgerLine, failure.ledgerSeq)}: ${failure.reason}`);
  }
  for (const item of r.refused) {
    lines.push(`REFUSED  ${ledgerWhere(item.ledgerLine, item.ledgerSeq)} / audit seq ${item.auditSeq ?? '?'}: ${item.reason}`);
  }
  for (const item of r.notCovered) lines.push(`NOT COVERED  ${ledgerWhere(item.ledgerLine, item.ledgerSeq)}: ${item.reason}`);
  return lines.join('\n');
}
