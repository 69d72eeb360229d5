import { rm, truncate, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  LEDGER_GENESIS_HASH,
  LedgerError,
  TORN_LINE_REASON,
  canonicalJson,
  formatLedgerVerification,
  ledgerEntryHash,
  receiptSignedBody,
  signCanonical,
  verifyParsedLedger,
  type LedgerEntry,
  type LedgerVerification,
} from '@federa/shared';
import { PrivacyLedger, readLedger, verifyLedger } from './index.js';
import { CKKS, OPENING, createTestPki, readLines, receiptFor, tempDir, writeLines, writeSampleLedger, type TestPki } from './ledger.testkit.js';

/** Renumbers and re-links entries as a careful forger would, so only what they cannot forge stands out. */
function rechain(entries: readonly LedgerEntry[]): LedgerEntry[] {
  let prevHash = LEDGER_GENESIS_HASH;
  return entries.map((entry, index) => {
    const body = { ...entry, seq: index + 1, prevHash };
    const hash = ledgerEntryHash(body);
    prevHash = hash;
    return { ...body, hash };
  });
}

function firstProblem(v: LedgerVerification): { line: number; seq: number | null; reason: string } {
  expect(v.ok).toBe(false);
  return v.problems[0]!;
}

describe('verifyLedger', () => {
  let pki: TestPki;
  let dir: string;
  let path: string;

  beforeAll(async () => {
    pki = await createTestPki();
  });

  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir, 'ledger', 'ledger.jsonl');
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes an intact ledger and reports head, counts, receipts and unacknowledged updates', async () => {
    const { ledger } = await writeSampleLedger(path, pki.server);
    const v = await verifyLedger(path, { caPem: pki.ca.certificatePem });
    expect(v.ok).toBe(true);
    expect(v.path).toBe(path);
    expect(v.entries).toBe(9);
    expect(v.head).toEqual(ledger.head);
    expect(v.siteId).toBe('hospital-a');
    expect(v.counts).toEqual({ opened: 1, registration: 1, 'dataset-summary': 1, metrics: 2, update: 2, evaluation: 1, refusal: 0, receipt: 1, 'key-share': 0, 'key-envelopes': 0, 'key-switch-share': 0, statistics: 0 });
    expect(v.receipts).toEqual([
      expect.objectContaining({ line: 6, seq: 6, refSeq: 5, auditSeq: 45, studyId: 'study-1', round: 1, status: 'verified', reason: null }),
    ]);
    expect(v.unacknowledged).toEqual([{ line: 8, seq: 8, studyId: 'study-1', round: 2, sha256: 'a'.repeat(64) }]);
    expect(v.caChecked).toBe(true);
    const text = formatLedgerVerification(v);
    expect(text.split('\n')[0]).toBe(`ledger OK: 9 entries, head seq 9 ${ledger.head.hash.slice(0, 12)}; 2 updates, 1 receipts verified`);
    expect(text).toContain('1 updates without a receipt: seq 8 (study-1 round 2)');
    expect(text).not.toContain('own certificates only');
  });

  it('verifies parsed entries as well as a path', async () => {
    await writeSampleLedger(path, pki.server);
    const parsed = await readLedger(path);
    const v = await verifyLedger(parsed);
    expect(v).toMatchObject({ ok: true, path: null, entries: 9, caChecked: false });
    expect(formatLedgerVerification(v)).toContain('checked against their own certificates only');
    expect(verifyParsedLedger({ entries: parsed.entries, problems: [] }).ok).toBe(true);
  });

  describe('tampering', () => {
    let lines: string[];

    beforeEach(async () => {
      await writeSampleLedger(path, pki.server);
      lines = await readLines(path);
    });

    async function verifyAfter(edit: (lines: string[]) => void, terminated = true): Promise<LedgerVerification> {
      edit(lines);
      await writeLines(path, lines, terminated);
      return verifyLedger(path, { caPem: pki.ca.certificatePem });
    }

    it('an edited field breaks the hash at that line', async () => {
      const v = await verifyAfter((l) => (l[3] = l[3]!.replace('"bytes":8', '"bytes":80')));
      expect(firstProblem(v)).toEqual({ line: 4, seq: 4, reason: 'entry was edited: its hash does not match its content' });
      expect(v.head?.seq).toBe(3);
      expect(formatLedgerVerification(v).split('\n')[0]).toBe('ledger BROKEN at line 4 (seq 4): entry was edited: its hash does not match its content');
    });

    it('an edit with a recomputed hash is caught on the next line', async () => {
      const v = await verifyAfter((l) => {
        const entry = JSON.parse(l[3]!) as LedgerEntry;
        const edited = { ...entry, bytes: 80 };
        l[3] = canonicalJson({ ...edited, hash: ledgerEntryHash(edited) });
      });
      const problem = firstProblem(v);
      expect(problem).toMatchObject({ line: 5, seq: 5 });
      expect(problem.reason).toMatch(/prevHash does not match the entry before: an entry before it was changed, removed or reordered/);
    });

    it('a deleted middle line leaves a seq gap', async () => {
      const v = await verifyAfter((l) => l.splice(3, 1));
      expect(firstProblem(v)).toEqual({ line: 4, seq: 5, reason: 'seq 5 where 4 was expected: entry 4 is missing (removed or moved)' });
    });

    it('a forged line, however carefully linked, breaks the chain on the line after it', async () => {
      const v = await verifyAfter((l) => {
        const prev = JSON.parse(l[3]!) as LedgerEntry;
        const forged = { ...prev, seq: prev.seq + 1, kind: 'metrics' as const, prevHash: prev.hash, detail: { forged: true } };
        l.splice(4, 0, canonicalJson({ ...forged, hash: ledgerEntryHash(forged) }));
      });
      expect(firstProblem(v)).toMatchObject({ line: 6, seq: 5, reason: 'seq 5 where 6 was expected: an entry was inserted, duplicated or moved' });
    });

    it('a copied line is caught where it was inserted', async () => {
      const v = await verifyAfter((l) => l.splice(4, 0, l[1]!));
      expect(firstProblem(v)).toMatchObject({ line: 5, seq: 2, reason: expect.stringMatching(/^seq 2 where 5 was expected/) });
    });

    it('swapped lines are caught at the first of them', async () => {
      const v = await verifyAfter((l) => ([l[2], l[3]] = [l[3]!, l[2]!]));
      expect(firstProblem(v)).toMatchObject({ line: 3, seq: 4, reason: expect.stringMatching(/^seq 4 where 3 was expected/) });
    });

    it('a tail truncated mid-line is reported at that line', async () => {
      const size = (await stat(path)).size;
      await truncate(path, size - 20);
      const v = await verifyLedger(path);
      expect(firstProblem(v)).toEqual({ line: 9, seq: null, reason: TORN_LINE_REASON });
      expect(v.head?.seq).toBe(8);
      expect(formatLedgerVerification(v)).toContain('ledger BROKEN at line 9: incomplete last line');
      expect(formatLedgerVerification(v)).toContain('intact up to seq 8');
    });

    it('a line of another site is caught', async () => {
      const v = await verifyAfter((l) => {
        const rewritten = rechain(l.map((line) => JSON.parse(line) as LedgerEntry).map((e, i) => (i === 6 ? { ...e, siteId: 'hospital-b' } : e)));
        l.splice(0, l.length, ...rewritten.map((e) => canonicalJson(e)));
      });
      expect(firstProblem(v)).toMatchObject({ line: 7, reason: 'site id changes from "hospital-a" to "hospital-b"' });
    });

    it('a ledger that lost its start is caught', async () => {
      const v = await verifyAfter((l) => {
        const rest = rechain(l.slice(1).map((line) => JSON.parse(line) as LedgerEntry));
        l.splice(0, l.length, ...rest.map((e) => canonicalJson(e)));
      });
      expect(firstProblem(v)).toMatchObject({ line: 1, reason: 'the first entry is "registration", not "opened": the start of the ledger is missing' });
    });
  });

  describe('receipts', () => {
    async function ledgerWithReceipt(receiptOf: (update: LedgerEntry) => ReturnType<typeof receiptFor>): Promise<void> {
      const ledger = await PrivacyLedger.open(path, OPENING);
      const update = await ledger.record({ kind: 'update', studyId: 'study-1', round: 1, content: new Uint8Array([1, 2, 3]), encryption: CKKS });
      await ledger.recordReceipt(update, receiptOf(update));
    }

    it('a forged signature is caught at the receipt line', async () => {
      await ledgerWithReceipt((update) => {
        const genuine = receiptFor(update, pki.server);
        // A real signature by the real key, but over another audit seq: what an edited receipt looks like.
        const other = signCanonical(receiptSignedBody({ ...genuine, auditSeq: 999 }), pki.server.privateKeyPem);
        return { ...genuine, signature: other };
      });
      for (const caPem of [undefined, pki.ca.certificatePem]) {
        const v = await verifyLedger(path, caPem === undefined ? {} : { caPem });
        expect(v.broken).toBeNull();
        expect(firstProblem(v)).toMatchObject({ line: 3, seq: 3, reason: expect.stringMatching(/signature does not verify: the receipt was forged or altered/) });
        expect(v.receipts[0]?.status).toBe('invalid');
        // A failed receipt acknowledges nothing.
        expect(v.unacknowledged.map((u) => u.seq)).toEqual([2]);
      }
    });

    it('a receipt signed under another CA passes on its own but fails against the consortium CA', async () => {
      await ledgerWithReceipt((update) => receiptFor(update, pki.otherServer));
      expect((await verifyLedger(path)).ok).toBe(true);
      const v = await verifyLedger(path, { caPem: pki.ca.certificatePem });
      expect(firstProblem(v)).toMatchObject({ line: 3, seq: 3 });
      expect(firstProblem(v).reason).toMatch(/not the consortium's coordinator certificate: .*another CA of the same name/);
    });

    it('checks the certificate at the time the receipt was issued', async () => {
      const later = Date.now() + 2 * 365 * 86_400_000; // after the one-year server certificate expired
      await ledgerWithReceipt((update) => receiptFor(update, pki.server, { receivedAtUnixMs: later }));
      const v = await verifyLedger(path, { caPem: pki.ca.certificatePem });
      expect(firstProblem(v).reason).toMatch(/expired/);
    });

    it('an unsigned receipt is reported as such, and fails when a CA is given', async () => {
      await ledgerWithReceipt((update) => receiptFor(update, null));
      const plain = await verifyLedger(path);
      expect(plain.ok).toBe(true);
      expect(plain.receipts[0]).toMatchObject({ status: 'unsigned', reason: expect.stringMatching(/^unsigned receipt/) });
      expect(plain.unacknowledged).toEqual([]);
      expect(formatLedgerVerification(plain).split('\n')[0]).toMatch(/1 updates, 0 receipts verified, 1 unsigned$/);
      const withCa = await verifyLedger(path, { caPem: pki.ca.certificatePem });
      expect(firstProblem(withCa)).toMatchObject({ line: 3, reason: expect.stringMatching(/unsigned receipt .*must be signed/) });
    });

    it('a receipt that does not match its update, or points at no update, is caught', async () => {
      await ledgerWithReceipt((update) => receiptFor(update, pki.server));
      const { entries } = await readLedger(path);
      const receiptEntry = entries[2]!;
      const genuine = receiptEntry.receipt!;
      const resigned = { ...genuine, receivedBytes: 4 };
      const mismatched = rechain([
        ...entries.slice(0, 2),
        { ...receiptEntry, receipt: { ...resigned, signature: signCanonical(receiptSignedBody(resigned), pki.server.privateKeyPem) } },
        { ...receiptEntry, refSeq: 1 },
        { ...receiptEntry, refSeq: 9 },
      ]);
      const v = verifyParsedLedger({ entries: mismatched, problems: [] }, { caPem: pki.ca.certificatePem });
      expect(v.broken).toBeNull();
      expect(v.problems.map((p) => [p.line, p.reason])).toEqual([
        [3, 'receipt for seq 2: it disagrees with update seq 2: receivedBytes 4 vs 3'],
        [4, 'receipt for seq 1: it acknowledges seq 1, which is of kind "opened", not an update'],
        [5, 'receipt for seq 9: it acknowledges seq 9, which is not in the ledger'],
      ]);
    });
  });

  it('refuses an unreadable CA certificate up front', async () => {
    await writeSampleLedger(path, pki.server);
    await expect(verifyLedger(path, { caPem: 'not a certificate' })).rejects.toThrow(LedgerError);
  });
});
