import { isSiteMessageKind, type LedgerEntry, type LedgerKind } from '@federa/shared';

/** What `federa-site ledger show` narrows the ledger to; every given condition must hold. */
export interface LedgerFilter {
  studyId?: string;
  kind?: LedgerKind;
  /** Entries at or after this moment. */
  since?: Date;
}

export function filterLedger(entries: readonly LedgerEntry[], filter: LedgerFilter = {}): LedgerEntry[] {
  const since = filter.since?.getTime();
  return entries.filter(
    (entry) =>
      (filter.studyId === undefined || entry.studyId === filter.studyId) &&
      (filter.kind === undefined || entry.kind === filter.kind) &&
      (since === undefined || Date.parse(entry.at) >= since),
  );
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

function short(value: string, length = 12): string {
  return value.length > length ? value.slice(0, length) : value;
}

function encryptionColumn(entry: LedgerEntry): string {
  if (!isSiteMessageKind(entry.kind)) return '-';
  if (entry.encryption === null) return 'clear';
  return `${entry.encryption.scheme} ${short(entry.encryption.keyFingerprint)}`;
}

function lastColumn(entry: LedgerEntry): string {
  if (entry.kind === 'receipt' && entry.receipt !== undefined) {
    const signed = entry.receipt.signature === '' ? 'unsigned' : 'signed';
    return `receipt for seq ${entry.refSeq ?? '?'}, audit seq ${entry.receipt.auditSeq}, ${signed}`;
  }
  if (entry.kind === 'opened') {
    const version = typeof entry.detail.agentVersion === 'string' ? `agent ${entry.detail.agentVersion}` : 'agent started';
    const torn = typeof entry.detail.tornTailMovedTo === 'string' ? `, torn tail moved to ${entry.detail.tornTailMovedTo}` : '';
    return `${version}${torn}`;
  }
  return entry.sha256 === null ? '-' : `sha256 ${short(entry.sha256)}`;
}

/** Pads every column but the last to its widest cell; numbers are right-aligned. */
function table(rows: string[][], rightAligned: ReadonlySet<number>): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, column) => (widths[column] = Math.max(widths[column] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, column) => {
        if (column === row.length - 1) return cell;
        const width = widths[column] ?? 0;
        return rightAligned.has(column) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  '),
  );
}

interface Tally {
  messages: number;
  bytes: number;
}

function tallyText(t: Tally): string {
  return `${t.messages} (${formatBytes(t.bytes)})`;
}

function summary(entries: readonly LedgerEntry[]): string {
  const byKind = new Map<LedgerKind, Tally>();
  const encrypted: Tally = { messages: 0, bytes: 0 };
  const clear: Tally = { messages: 0, bytes: 0 };
  let receipts = 0;
  let opened = 0;
  for (const entry of entries) {
    if (entry.kind === 'receipt') receipts += 1;
    if (entry.kind === 'opened') opened += 1;
    if (!isSiteMessageKind(entry.kind)) continue;
    const kind = byKind.get(entry.kind) ?? { messages: 0, bytes: 0 };
    byKind.set(entry.kind, { messages: kind.messages + 1, bytes: kind.bytes + entry.bytes });
    const side = entry.encrypted ? encrypted : clear;
    side.messages += 1;
    side.bytes += entry.bytes;
  }
  const total: Tally = { messages: encrypted.messages + clear.messages, bytes: encrypted.bytes + clear.bytes };
  const lines = [
    `${entries.length} entries: ${total.messages} messages sent, ${total.bytes} bytes (${formatBytes(total.bytes)}); ` +
      `encrypted ${tallyText(encrypted)}, clear ${tallyText(clear)}; ${receipts} receipts, ${opened} agent starts`,
  ];
  if (byKind.size > 0) lines.push(`by kind: ${[...byKind].map(([kind, t]) => `${kind} ${tallyText(t)}`).join(', ')}`);
  return lines.join('\n');
}

/** `federa-site ledger show`: one line per entry, then what was sent in total. */
export function formatLedger(entries: readonly LedgerEntry[], filter: LedgerFilter = {}): string {
  const shown = filterLedger(entries, filter);
  if (shown.length === 0) return 'no ledger entries match';
  const header = ['seq', 'at', 'kind', 'study', 'round', 'bytes', 'encryption', 'content'];
  const rows = shown.map((entry) => [
    String(entry.seq),
    entry.at,
    entry.kind,
    entry.studyId ?? '-',
    entry.round === null ? '-' : String(entry.round),
    String(entry.bytes),
    encryptionColumn(entry),
    lastColumn(entry),
  ]);
  return [...table([header, ...rows], new Set([0, 4, 5])), summary(shown)].join('\n');
}
