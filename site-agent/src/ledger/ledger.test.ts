import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { appendFile, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LEDGER_GENESIS_HASH, LedgerError, canonicalJson, ledgerEntryHash, type LedgerEntry } from '@federa/shared';
import { LEDGER_FILE, LedgerDamagedError, PrivacyLedger, ledgerPath, readLedger, verifyLedger } from './index.js';
import { CKKS, OPENING, readLines, receiptFor, tempDir, writeLines, writeSampleLedger } from './ledger.testkit.js';

type Syncable = { sync: () => Promise<void> };

/** FileHandle is not exported; its prototype is reachable through any open handle. */
async function fileHandlePrototype(path: string): Promise<Syncable> {
  const handle = await open(path, 'r');
  const proto = Object.getPrototypeOf(handle) as Syncable;
  await handle.close();
  return proto;
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('PrivacyLedger', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await tempDir();
    path = ledgerPath(join(dir, 'state'));
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the ledger under <state>/ledger/ledger.jsonl', () => {
    expect(ledgerPath('/var/lib/federa')).toBe(join('/var/lib/federa', 'ledger', LEDGER_FILE));
  });

  it.each([0o000, 0o277])('creates a 0700 folder and a 0600 file whatever the umask (%o)', async (umask) => {
    const previous = process.umask(umask);
    try {
      await PrivacyLedger.open(path, OPENING);
    } finally {
      process.umask(previous);
    }
    expect((await stat(join(dir, 'state', 'ledger'))).mode & 0o777).toBe(0o700);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('starts a new ledger with an opened entry', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    const { entries, problems } = await readLedger(path);
    expect(problems).toEqual([]);
    expect(entries).toHaveLength(1);
    const opened = entries[0]!;
    expect(opened).toMatchObject({ seq: 1, kind: 'opened', siteId: 'hospital-a', bytes: 0, sha256: null, encrypted: false, prevHash: LEDGER_GENESIS_HASH });
    expect(opened.detail).toEqual({ certificateFingerprint: 'AB:CD:EF', agentVersion: '0.1.0-test' });
    expect(ledger.head).toEqual({ seq: 1, hash: opened.hash });
    expect(ledger.path).toBe(path);
  });

  it('records what leaves: byte count, SHA-256 of the exact bytes, encryption, and the link to the entry before', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    const before = ledger.head;
    const payload = bytes('the exact protobuf bytes');
    const entry = await ledger.record({ kind: 'update', studyId: 'study-1', round: 3, content: payload, encryption: CKKS, detail: { chunks: 1 } });
    expect(entry).toMatchObject({
      seq: 2,
      kind: 'update',
      studyId: 'study-1',
      round: 3,
      bytes: payload.byteLength,
      sha256: createHash('sha256').update(payload).digest('hex'),
      encrypted: true,
      encryption: CKKS,
      detail: { chunks: 1 },
      prevHash: before.hash,
    });
    expect(entry.hash).toBe(ledgerEntryHash(entry));
    const clear = await ledger.record({ kind: 'metrics', studyId: 'study-1', round: 3, content: bytes('m'), encryption: null });
    expect(clear).toMatchObject({ encrypted: false, encryption: null, detail: {}, prevHash: entry.hash });
    // One canonical JSON line per entry, exactly as returned.
    expect((await readLines(path)).slice(1)).toEqual([canonicalJson(entry), canonicalJson(clear)]);
  });

  it('accepts a payload that was hashed already', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    const entry = await ledger.record({ kind: 'update', studyId: 's', round: 1, content: { sha256: 'b'.repeat(64), bytes: 123_456_789 }, encryption: CKKS });
    expect(entry).toMatchObject({ bytes: 123_456_789, sha256: 'b'.repeat(64) });
  });

  it('has the entry flushed to disk before record resolves', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    const proto = await fileHandlePrototype(path);
    const original = proto.sync;
    const onDiskAtSync: string[] = [];
    vi.spyOn(proto, 'sync').mockImplementation(async function (this: Syncable) {
      await original.call(this);
      onDiskAtSync.push(readFileSync(path, 'utf8'));
    });
    let resolved = false;
    const pending = ledger.record({ kind: 'metrics', studyId: 's', round: 1, content: bytes('x'), encryption: null }).then((entry) => {
      resolved = true;
      return entry;
    });
    expect(resolved).toBe(false);
    const entry = await pending;
    expect(onDiskAtSync).toHaveLength(1);
    expect(onDiskAtSync[0]).toContain(`${canonicalJson(entry)}\n`);
  });

  it('serialises concurrent records into one valid chain', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    const recorded = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        ledger.record({ kind: 'metrics', studyId: 'study-1', round: i, content: bytes(`metric ${i}`), encryption: null }),
      ),
    );
    // Call order is entry order.
    expect(recorded.map((entry) => entry.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    const verification = await verifyLedger(path);
    expect(verification.ok).toBe(true);
    expect(verification.entries).toBe(21);
    expect(verification.head).toEqual(ledger.head);
    expect(ledger.head.seq).toBe(21);
  });

  it('continues the chain on reopen, with an opened entry for each start', async () => {
    const first = await PrivacyLedger.open(path, OPENING);
    const update = await first.record({ kind: 'update', studyId: 's', round: 1, content: bytes('u'), encryption: CKKS });
    const headBefore = first.head;
    const second = await PrivacyLedger.open(path, { ...OPENING, agentVersion: '0.2.0' });
    expect(second.head.seq).toBe(3);
    const { entries } = await readLedger(path);
    expect(entries.map((e) => e.kind)).toEqual(['opened', 'update', 'opened']);
    expect(entries[2]).toMatchObject({ prevHash: headBefore.hash, detail: { agentVersion: '0.2.0' } });
    // An update recorded before the restart can still get its receipt.
    const receipt = await second.recordReceipt(update, receiptFor(update, null));
    expect(receipt).toMatchObject({ seq: 4, refSeq: 2 });
    expect((await verifyLedger(path)).ok).toBe(true);
  });

  it('treats an empty file as a new ledger', async () => {
    await mkdir(join(dir, 'state', 'ledger'), { recursive: true });
    await writeFile(path, '');
    const ledger = await PrivacyLedger.open(path, OPENING);
    expect(ledger.head.seq).toBe(1);
  });

  it('moves a torn last line aside and continues after the last complete entry', async () => {
    const { ledger } = await writeSampleLedger(path, null);
    const head = ledger.head;
    const torn = '{"at":"2030-01-01T00:00:00.000Z","bytes":12,"det';
    await appendFile(path, torn);

    const reopened = await PrivacyLedger.open(path, OPENING);
    const tornFiles = (await readdir(join(dir, 'state', 'ledger'))).filter((name) => name.startsWith(`${LEDGER_FILE}.torn-`));
    expect(tornFiles).toHaveLength(1);
    const tornPath = join(dir, 'state', 'ledger', tornFiles[0]!);
    expect(await readFile(tornPath, 'utf8')).toBe(torn);
    expect((await stat(tornPath)).mode & 0o777).toBe(0o600);
    expect(tornFiles[0]).toMatch(/\.torn-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z$/);

    const { entries } = await readLedger(path);
    const opened = entries.at(-1)!;
    expect(opened).toMatchObject({ seq: head.seq + 1, kind: 'opened', prevHash: head.hash, detail: { tornTailMovedTo: tornFiles[0] } });
    expect(reopened.head.seq).toBe(head.seq + 1);
    expect((await verifyLedger(path)).ok).toBe(true);
  });

  it('terminates a complete last entry that only lost its newline', async () => {
    const { ledger } = await writeSampleLedger(path, null);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, -1));
    const reopened = await PrivacyLedger.open(path, OPENING);
    expect(reopened.head.seq).toBe(ledger.head.seq + 1);
    const verification = await verifyLedger(path);
    expect(verification.ok).toBe(true);
    expect(verification.entries).toBe(ledger.head.seq + 1);
  });

  it('refuses a damaged ledger, names the line, and appends nothing', async () => {
    await writeSampleLedger(path, null);
    const lines = await readLines(path);
    lines[3] = lines[3]!.replace('"bytes":8', '"bytes":9');
    await writeLines(path, lines);
    const before = await readFile(path, 'utf8');

    const error = await PrivacyLedger.open(path, OPENING).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LedgerDamagedError);
    expect(error).toMatchObject({ line: 4, path });
    expect((error as Error).message).toMatch(/line 4: entry was edited/);
    expect((error as Error).message).toContain('federa-site ledger verify');
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  it.each([
    ['an unreadable middle line', (lines: string[]) => lines.splice(2, 0, '{"seq":'), 3, /not JSON/],
    ['a deleted middle line', (lines: string[]) => lines.splice(4, 1), 5, /entry 5 is missing/],
    ['an unterminated last line that is JSON but no entry', (lines: string[]) => lines.push('{"seq":99}'), 10, /not a valid ledger entry/],
  ])('refuses %s', async (_name, damage, line, reason) => {
    await writeSampleLedger(path, null);
    const lines = await readLines(path);
    damage(lines);
    const unterminated = lines.at(-1) === '{"seq":99}';
    await writeLines(path, lines, !unterminated);
    const error = await PrivacyLedger.open(path, OPENING).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LedgerDamagedError);
    expect((error as LedgerDamagedError).line).toBe(line);
    expect((error as LedgerDamagedError).reason).toMatch(reason);
  });

  it("refuses another site's ledger", async () => {
    await writeSampleLedger(path, null);
    const error = await PrivacyLedger.open(path, { ...OPENING, siteId: 'hospital-b' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LedgerError);
    expect(error).not.toBeInstanceOf(LedgerDamagedError);
    expect((error as Error).message).toMatch(/belongs to site "hospital-a", not to this site "hospital-b"/);
  });

  it('says which path it cannot read', async () => {
    await mkdir(path, { recursive: true }); // a folder where the file should be
    await expect(PrivacyLedger.open(path, OPENING)).rejects.toThrow(`cannot read the privacy ledger ${path}`);
    await expect(readLedger(join(dir, 'missing.jsonl'))).rejects.toThrow(/missing\.jsonl: the file does not exist/);
  });

  it('refuses an invalid entry without writing anything, and stays usable', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    const head = ledger.head;
    await expect(
      ledger.record({ kind: 'opened' as 'update', studyId: null, round: null, content: bytes('x'), encryption: null }),
    ).rejects.toThrow(/not a site message kind/);
    await expect(
      ledger.record({ kind: 'update', studyId: 's', round: 1, content: { sha256: 'not-a-hash', bytes: 1 }, encryption: null }),
    ).rejects.toThrow(/invalid update entry: sha256/);
    await expect(
      ledger.record({ kind: 'metrics', studyId: 's', round: -1, content: bytes('x'), encryption: null }),
    ).rejects.toThrow(/round/);
    expect(ledger.head).toEqual(head);
    expect(await readLines(path)).toHaveLength(1);
    await ledger.record({ kind: 'metrics', studyId: 's', round: 1, content: bytes('x'), encryption: null });
    expect((await verifyLedger(path)).ok).toBe(true);
  });

  it('fails closed when a flush fails, leaving the chain as it was', async () => {
    const ledger = await PrivacyLedger.open(path, OPENING);
    await ledger.record({ kind: 'metrics', studyId: 's', round: 1, content: bytes('x'), encryption: null });
    const sizeBefore = (await stat(path)).size;
    const proto = await fileHandlePrototype(path);
    vi.spyOn(proto, 'sync').mockRejectedValueOnce(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));

    await expect(ledger.record({ kind: 'update', studyId: 's', round: 1, content: bytes('u'), encryption: null })).rejects.toThrow(
      /writing or flushing the entry failed.*must not be sent/,
    );
    expect((await stat(path)).size).toBe(sizeBefore);
    await expect(ledger.record({ kind: 'metrics', studyId: 's', round: 1, content: bytes('y'), encryption: null })).rejects.toThrow(
      /accepts nothing more/,
    );
    vi.restoreAllMocks();
    const reopened = await PrivacyLedger.open(path, OPENING);
    expect(reopened.head.seq).toBe(3);
    expect((await verifyLedger(path)).ok).toBe(true);
  });

  it('notices another writer of the same file', async () => {
    const first = await PrivacyLedger.open(path, OPENING);
    await PrivacyLedger.open(path, OPENING);
    await expect(first.record({ kind: 'metrics', studyId: 's', round: 1, content: bytes('x'), encryption: null })).rejects.toThrow(
      /another process writing the same ledger\?/,
    );
    expect((await verifyLedger(path)).ok).toBe(true);
  });

  describe('recordReceipt', () => {
    async function withUpdate(): Promise<{ ledger: PrivacyLedger; update: LedgerEntry }> {
      const ledger = await PrivacyLedger.open(path, OPENING);
      const update = await ledger.record({ kind: 'update', studyId: 'study-1', round: 2, content: bytes('payload'), encryption: CKKS });
      return { ledger, update };
    }

    it('stores the receipt as an entry of its own that points at the update', async () => {
      const { ledger, update } = await withUpdate();
      const receipt = receiptFor(update, null);
      const entry = await ledger.recordReceipt(update, receipt);
      expect(entry).toMatchObject({
        seq: 3,
        kind: 'receipt',
        refSeq: update.seq,
        studyId: 'study-1',
        round: 2,
        bytes: 0,
        sha256: null,
        encrypted: false,
        encryption: null,
        receipt,
      });
      expect((await readLedger(path)).entries.at(-1)).toEqual(entry);
    });

    it.each([
      ['siteId', { siteId: 'hospital-b' }],
      ['studyId', { studyId: 'study-2' }],
      ['round', { round: 3 }],
      ['sha256', { sha256: 'c'.repeat(64) }],
      ['receivedBytes', { receivedBytes: 6 }],
    ])('refuses a receipt whose %s disagrees with the update', async (field, override) => {
      const { ledger, update } = await withUpdate();
      await expect(ledger.recordReceipt(update, receiptFor(update, null, override))).rejects.toThrow(
        new RegExp(`disagrees with the ledger on ${field} `),
      );
      expect(ledger.head.seq).toBe(2);
    });

    it('refuses an entry that is not an update of this ledger, and a malformed receipt', async () => {
      const { ledger, update } = await withUpdate();
      const receipt = receiptFor(update, null);
      await expect(ledger.recordReceipt({ ...update, kind: 'metrics' }, receipt)).rejects.toThrow(/not an update entry/);
      await expect(ledger.recordReceipt({ ...update, hash: 'd'.repeat(64) }, receipt)).rejects.toThrow(/not an update entry/);
      await expect(ledger.recordReceipt(update, { ...receipt, auditSeq: 0 })).rejects.toThrow(/malformed: auditSeq/);
    });
  });
});
