import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerEntry } from '@federa/shared';
import { filterLedger, formatBytes, formatLedger, readLedger } from './index.js';
import { createTestPki, receiptFor, tempDir, writeSampleLedger } from './ledger.testkit.js';

describe('formatLedger and filterLedger', () => {
  let dir: string;
  let entries: LedgerEntry[];

  beforeAll(async () => {
    dir = await tempDir();
    const path = join(dir, 'ledger.jsonl');
    const pki = await createTestPki();
    const { ledger } = await writeSampleLedger(path, pki.server);
    // A second study with an unsigned receipt and a refusal.
    const update = await ledger.record({ kind: 'update', studyId: 'study-2', round: 1, content: new Uint8Array(10), encryption: null });
    await ledger.recordReceipt(update, receiptFor(update, null));
    await ledger.record({ kind: 'refusal', studyId: 'study-2', round: 2, content: new Uint8Array(3), encryption: null, detail: { reason: 'budget' } });
    entries = (await readLedger(path)).entries;
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('shows one aligned line per entry, then the totals', () => {
    const lines = formatLedger(entries).split('\n');
    expect(lines[0]).toMatch(/^seq {2}at +kind +study +round +bytes {2}encryption +content$/);
    expect(lines).toHaveLength(1 + 12 + 2);
    const row = (seq: number): string => lines.find((line) => line.trimStart().startsWith(`${seq}  `))!;
    expect(row(1)).toMatch(/ opened +- +- +0 +- +agent 0\.1\.0-test$/);
    expect(row(2)).toMatch(/ registration +- +- +5 +clear +sha256 [0-9a-f]{12}$/);
    expect(row(5)).toMatch(/ update +study-1 +1 +4096 +ckks 3f9a1c2b7d4e +sha256 [0-9a-f]{12}$/);
    expect(row(6)).toMatch(/ receipt +study-1 +1 +0 +- +receipt for seq 5, audit seq 45, signed$/);
    expect(row(11)).toMatch(/receipt for seq 10, audit seq 50, unsigned$/);
    // Columns line up: every row has the kind at the same offset as the header.
    const kindAt = lines[0]!.indexOf('kind');
    expect(lines.slice(1, 13).every((line) => /[a-z]/.test(line[kindAt]!) && line[kindAt - 1] === ' ')).toBe(true);
    expect(lines[13]).toBe(
      '12 entries: 9 messages sent, 1004144 bytes (980.6 KiB); encrypted 2 (980.6 KiB), clear 7 (48 B); 2 receipts, 1 agent starts',
    );
    expect(lines[14]).toBe(
      'by kind: registration 1 (5 B), dataset-summary 1 (7 B), metrics 2 (16 B), update 3 (980.6 KiB), evaluation 1 (7 B), refusal 1 (3 B)',
    );
  });

  it('filters by study, kind and time', () => {
    expect(filterLedger(entries, { studyId: 'study-2' }).map((e) => e.seq)).toEqual([10, 11, 12]);
    expect(filterLedger(entries, { kind: 'update' }).map((e) => e.seq)).toEqual([5, 8, 10]);
    expect(filterLedger(entries, { studyId: 'study-1', kind: 'receipt' }).map((e) => e.seq)).toEqual([6]);
    const since = new Date(entries[9]!.at);
    expect(filterLedger(entries, { since }).every((e) => Date.parse(e.at) >= since.getTime())).toBe(true);
    expect(filterLedger(entries, { since }).map((e) => e.seq)).toContain(12);
    expect(filterLedger(entries, {})).toHaveLength(12);
    expect(filterLedger(entries, { since: new Date('2999-01-01T00:00:00Z') })).toEqual([]);
  });

  it('summarises only what it shows', () => {
    const text = formatLedger(entries, { studyId: 'study-2' });
    expect(text.split('\n')).toHaveLength(1 + 3 + 2);
    expect(text).toContain('3 entries: 2 messages sent, 13 bytes (13 B); encrypted 0 (0 B), clear 2 (13 B); 1 receipts, 0 agent starts');
    expect(formatLedger(entries, { kind: 'refusal', studyId: 'study-1' })).toBe('no ledger entries match');
  });

  it('formats byte counts', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });
});
