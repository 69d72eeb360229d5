import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TORN_LINE_REASON, parseLedgerText } from '@federa/shared';
import { readLedger, verifyLedger } from './index.js';
import { readLines, tempDir, writeLines, writeSampleLedger } from './ledger.testkit.js';

describe('readLedger', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir, 'ledger.jsonl');
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads every entry of an intact ledger', async () => {
    await writeSampleLedger(path, null);
    const parsed = await readLedger(path);
    expect(parsed.problems).toEqual([]);
    expect(parsed.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(parsed.lines).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(parsed.endsWithNewline).toBe(true);
  });

  it('skips bad lines, naming each by its 1-based line number, and keeps the rest', async () => {
    await writeSampleLedger(path, null);
    const lines = await readLines(path);
    lines.splice(1, 0, 'not json');
    lines.splice(3, 0, '');
    lines.splice(5, 0, '{"seq":1}');
    lines.push('{"seq":');
    await writeLines(path, lines, false);

    const parsed = await readLedger(path);
    expect(parsed.entries).toHaveLength(9);
    expect(parsed.lines).toEqual([1, 3, 5, 7, 8, 9, 10, 11, 12]);
    expect(parsed.problems.map((p) => p.line)).toEqual([2, 4, 6, 13]);
    expect(parsed.problems[0]!.reason).toMatch(/^not JSON/);
    expect(parsed.problems[1]!.reason).toBe('empty line');
    expect(parsed.problems[2]!.reason).toMatch(/^not a valid ledger entry: .*at/);
    expect(parsed.problems[3]!.reason).toBe(TORN_LINE_REASON);
    expect(parsed.endsWithNewline).toBe(false);

    // verify reports the first of them, and checks the chain only up to it.
    const v = await verifyLedger(parsed);
    expect(v.broken).toEqual({ line: 2, seq: null, reason: parsed.problems[0]!.reason });
    expect(v.head?.seq).toBe(1);
  });

  it('never throws on content, whatever the bytes', async () => {
    await writeFile(path, Buffer.from([0xff, 0xfe, 0x00, 0x0a, 0x7b, 0x0a, 0x5b, 0x5d, 0x0a, 0x6e, 0x75, 0x6c, 0x6c]));
    const parsed = await readLedger(path);
    expect(parsed.entries).toEqual([]);
    expect(parsed.problems.map((p) => p.line)).toEqual([1, 2, 3, 4]);
    expect(parseLedgerText('')).toEqual({ entries: [], problems: [], lines: [], endsWithNewline: true });
  });

  it('throws, naming the path, only when the file cannot be read', async () => {
    await expect(readLedger(join(dir, 'nope.jsonl'))).rejects.toThrow(`cannot read the privacy ledger ${join(dir, 'nope.jsonl')}: the file does not exist`);
    await expect(readLedger(dir)).rejects.toThrow(`cannot read the privacy ledger ${dir}`);
  });
});
