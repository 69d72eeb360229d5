import { X509Certificate } from 'node:crypto';
import { receiptSignedBody } from '../audit/receipt.js';
import { verifyCanonical } from '../pki/signing.js';
import { verifyCertificate } from '../pki/verify.js';
import { LEDGER_GENESIS_HASH, LEDGER_KINDS, ledgerEntryHash, type LedgerEntry, type LedgerKind } from './entry.js';
import { LedgerError, type ParsedLedger } from './parse.js';

/** Something wrong at one line; `seq` is null when the line is not a readable entry. */
export interface LedgerProblem {
  line: number;
  seq: number | null;
  reason: string;
}

export interface LedgerHead {
  seq: number;
  hash: string;
}

export type LedgerReceiptStatus = 'verified' | 'unsigned' | 'invalid';

export interface LedgerReceiptCheck {
  line: number;
  seq: number;
  /** The update entry it acknowledges. */
  refSeq: number;
  auditSeq: number;
  studyId: string;
  round: number;
  status: LedgerReceiptStatus;
  /** Why it is invalid, or why it is unsigned; null when verified. */
  reason: string | null;
}

export interface LedgerUnacknowledgedUpdate {
  line: number;
  seq: number;
  studyId: string | null;
  round: number | null;
  sha256: string | null;
}

export interface LedgerVerification {
  /** No problem at all: an intact chain and every receipt valid (and signed and trusted, when a CA was given). */
  ok: boolean;
  path: string | null;
  /** Valid entries read (including any after a break). */
  entries: number;
  /** The last entry of the intact chain: the head when ok, else the last entry before the break. */
  head: LedgerHead | null;
  siteId: string | null;
  counts: Record<LedgerKind, number>;
  /** The first line where the hash chain breaks (unreadable line, edit, gap, reordering, site change). */
  broken: LedgerProblem | null;
  /** Every failure, by line: the chain break and each bad receipt. */
  problems: LedgerProblem[];
  receipts: LedgerReceiptCheck[];
  /** Updates no valid receipt acknowledges: informational (an upload that failed, or a coordinator that refused it). */
  unacknowledged: LedgerUnacknowledgedUpdate[];
  /** Whether receipt certificates were checked against the consortium CA, not only against themselves. */
  caChecked: boolean;
}

export interface VerifyLedgerOptions {
  /** The consortium CA: receipts must then be signed by a server certificate it issued. */
  caPem?: string;
}

export interface LedgerChainCheck {
  broken: LedgerProblem | null;
  head: LedgerHead | null;
  siteId: string | null;
}

function lineNumbers(parsed: ParsedLedger): number[] {
  return parsed.lines ?? parsed.entries.map((_, index) => index + 1);
}

/** Why `entry` does not continue the chain after `prev`; null when it does. Hash first, so an edit names its own line. */
function linkProblem(prev: LedgerEntry | null, entry: LedgerEntry): string | null {
  if (ledgerEntryHash(entry) !== entry.hash) {
    return 'entry was edited: its hash does not match its content';
  }
  const expected = prev === null ? 1 : prev.seq + 1;
  if (entry.seq > expected) {
    const missing = entry.seq - expected === 1 ? `entry ${expected} is` : `entries ${expected}..${entry.seq - 1} are`;
    return `seq ${entry.seq} where ${expected} was expected: ${missing} missing (removed or moved)`;
  }
  if (entry.seq < expected) {
    return `seq ${entry.seq} where ${expected} was expected: an entry was inserted, duplicated or moved`;
  }
  if (entry.prevHash !== (prev?.hash ?? LEDGER_GENESIS_HASH)) {
    return 'prevHash does not match the entry before: an entry before it was changed, removed or reordered';
  }
  if (prev !== null && entry.siteId !== prev.siteId) {
    return `site id changes from "${prev.siteId}" to "${entry.siteId}"`;
  }
  if (prev === null && entry.kind !== 'opened') {
    return `the first entry is "${entry.kind}", not "opened": the start of the ledger is missing`;
  }
  return null;
}

/** The hash chain alone: what the agent checks before appending, and the first part of `verify`. */
export function checkLedgerChain(parsed: ParsedLedger): LedgerChainCheck {
  const lines = lineNumbers(parsed);
  const firstUnreadable = [...parsed.problems].sort((a, b) => a.line - b.line)[0];
  let prev: LedgerEntry | null = null;
  let broken: LedgerProblem | null = null;
  for (const [index, entry] of parsed.entries.entries()) {
    const line = lines[index] ?? index + 1;
    if (firstUnreadable !== undefined && firstUnreadable.line < line) break;
    const reason = linkProblem(prev, entry);
    if (reason !== null) {
      broken = { line, seq: entry.seq, reason };
      break;
    }
    prev = entry;
  }
  if (firstUnreadable !== undefined && (broken === null || firstUnreadable.line < broken.line)) {
    broken = { line: firstUnreadable.line, seq: null, reason: firstUnreadable.reason };
  }
  return {
    broken,
    head: prev === null ? null : { seq: prev.seq, hash: prev.hash },
    siteId: parsed.entries[0]?.siteId ?? null,
  };
}

function describe(value: unknown): string {
  return JSON.stringify(value);
}

function checkReceipt(
  entry: LedgerEntry,
  line: number,
  bySeq: ReadonlyMap<number, LedgerEntry>,
  caPem: string | undefined,
): LedgerReceiptCheck {
  // The schema guarantees both on a receipt entry; the guard keeps the types honest.
  const receipt = entry.receipt;
  const refSeq = entry.refSeq;
  if (receipt === undefined || refSeq === undefined) throw new LedgerError(`line ${line}: receipt entry without a receipt`);
  const reasons: string[] = [];
  const update = bySeq.get(refSeq);
  if (update === undefined) {
    reasons.push(`it acknowledges seq ${refSeq}, which is not in the ledger`);
  } else if (update.kind !== 'update') {
    reasons.push(`it acknowledges seq ${refSeq}, which is of kind "${update.kind}", not an update`);
  } else {
    if (refSeq >= entry.seq) reasons.push(`it acknowledges seq ${refSeq}, which comes after it`);
    const pairs: Array<[string, unknown, unknown]> = [
      ['siteId', receipt.siteId, update.siteId],
      ['studyId', receipt.studyId, update.studyId],
      ['round', receipt.round, update.round],
      ['sha256', receipt.sha256, update.sha256],
      ['receivedBytes', receipt.receivedBytes, update.bytes],
    ];
    const differ = pairs.filter(([, a, b]) => a !== b).map(([field, a, b]) => `${field} ${describe(a)} vs ${describe(b)}`);
    if (differ.length > 0) reasons.push(`it disagrees with update seq ${refSeq}: ${differ.join(', ')}`);
  }
  if (entry.studyId !== receipt.studyId || entry.round !== receipt.round || entry.siteId !== receipt.siteId) {
    reasons.push('the entry names another site, study or round than the receipt it carries');
  }

  let unsigned: string | null = null;
  if (receipt.signature === '') {
    unsigned = 'unsigned receipt (the coordinator ran without a kit)';
    if (caPem !== undefined) reasons.push(`${unsigned}: with the consortium CA every receipt must be signed`);
  } else if (receipt.certificatePem === '') {
    reasons.push('signed, but carries no certificate to check the signature with');
  } else {
    let valid: boolean | null = null; // null: the certificate could not even be read
    try {
      valid = verifyCanonical(receiptSignedBody(receipt), receipt.signature, receipt.certificatePem);
    } catch (error) {
      reasons.push(`its certificate is unreadable: ${(error as Error).message}`);
    }
    if (valid === false) reasons.push('its signature does not verify: the receipt was forged or altered');
    if (valid && caPem !== undefined) {
      const trust = verifyCertificate(receipt.certificatePem, caPem, { purpose: 'server', at: new Date(receipt.receivedAtUnixMs) });
      if (!trust.ok) reasons.push(`its certificate is not the consortium's coordinator certificate: ${trust.reason}`);
    }
  }
  const status: LedgerReceiptStatus = reasons.length > 0 ? 'invalid' : unsigned !== null ? 'unsigned' : 'verified';
  return {
    line,
    seq: entry.seq,
    refSeq,
    auditSeq: receipt.auditSeq,
    studyId: receipt.studyId,
    round: receipt.round,
    status,
    reason: reasons.length > 0 ? reasons.join('; ') : unsigned,
  };
}

function assertReadableCa(caPem: string): void {
  try {
    new X509Certificate(caPem);
  } catch (error) {
    throw new LedgerError(`the consortium CA certificate is not a readable X.509 certificate: ${(error as Error).message}`, { cause: error });
  }
}

/** Verifies parsed entries (synchronously): the chain, the receipts, and what is unacknowledged. */
export function verifyParsedLedger(parsed: ParsedLedger, options: VerifyLedgerOptions = {}, path: string | null = null): LedgerVerification {
  if (options.caPem !== undefined) assertReadableCa(options.caPem);
  const chain = checkLedgerChain(parsed);
  const lines = lineNumbers(parsed);
  const counts = Object.fromEntries(LEDGER_KINDS.map((kind) => [kind, 0])) as Record<LedgerKind, number>;
  const bySeq = new Map<number, LedgerEntry>();
  for (const entry of parsed.entries) {
    counts[entry.kind] += 1;
    // The first entry of a seq wins: after a break a later duplicate cannot redirect a receipt.
    if (!bySeq.has(entry.seq)) bySeq.set(entry.seq, entry);
  }

  const receipts: LedgerReceiptCheck[] = [];
  parsed.entries.forEach((entry, index) => {
    if (entry.kind === 'receipt') receipts.push(checkReceipt(entry, lines[index] ?? index + 1, bySeq, options.caPem));
  });
  const acknowledged = new Set(receipts.filter((r) => r.status !== 'invalid').map((r) => r.refSeq));
  const unacknowledged: LedgerUnacknowledgedUpdate[] = [];
  parsed.entries.forEach((entry, index) => {
    if (entry.kind === 'update' && !acknowledged.has(entry.seq)) {
      unacknowledged.push({ line: lines[index] ?? index + 1, seq: entry.seq, studyId: entry.studyId, round: entry.round, sha256: entry.sha256 });
    }
  });

  const problems: LedgerProblem[] = [
    ...(chain.broken === null ? [] : [chain.broken]),
    ...receipts.filter((r) => r.status === 'invalid').map((r) => ({ line: r.line, seq: r.seq, reason: `receipt for seq ${r.refSeq}: ${r.reason ?? 'invalid'}` })),
  ].sort((a, b) => a.line - b.line);

  return {
    ok: problems.length === 0,
    path,
    entries: parsed.entries.length,
    head: chain.head,
    siteId: chain.siteId,
    counts,
    broken: chain.broken,
    problems,
    receipts,
    unacknowledged,
    caChecked: options.caPem !== undefined,
  };
}

function shortHash(hash: string): string {
  return hash.slice(0, 12);
}

/** Human lines for the CLI: the verdict first, then what an auditor needs next. */
export function formatLedgerVerification(v: LedgerVerification): string {
  const out: string[] = [];
  const verified = v.receipts.filter((r) => r.status === 'verified').length;
  const unsigned = v.receipts.filter((r) => r.status === 'unsigned').length;
  const first = v.problems[0];
  if (first === undefined) {
    const head = v.head === null ? 'empty' : `head seq ${v.head.seq} ${shortHash(v.head.hash)}`;
    const extra = unsigned > 0 ? `, ${unsigned} unsigned` : '';
    out.push(`ledger OK: ${v.entries} entries, ${head}; ${v.counts.update} updates, ${verified} receipts verified${extra}`);
  } else {
    const seq = first.seq === null ? '' : ` (seq ${first.seq})`;
    out.push(`ledger BROKEN at line ${first.line}${seq}: ${first.reason}`);
    for (const problem of v.problems.slice(1)) {
      out.push(`  also line ${problem.line}${problem.seq === null ? '' : ` (seq ${problem.seq})`}: ${problem.reason}`);
    }
    if (v.broken !== null) {
      out.push(v.head === null ? '  no entry before the break is intact' : `  intact up to seq ${v.head.seq} ${shortHash(v.head.hash)}`);
    }
    out.push(`  ${v.entries} readable entries; ${v.counts.update} updates, ${verified} receipts verified${unsigned > 0 ? `, ${unsigned} unsigned` : ''}`);
  }
  if (v.unacknowledged.length > 0) {
    const list = v.unacknowledged.map((u) => `seq ${u.seq} (${u.studyId ?? '-'} round ${u.round ?? '-'})`).join(', ');
    out.push(`  ${v.unacknowledged.length} updates without a receipt: ${list}`);
  }
  if (!v.caChecked && verified > 0) {
    out.push('  receipt signatures were checked against their own certificates only; give the consortium CA to check who signed them');
  }
  return out.join('\n');
}
