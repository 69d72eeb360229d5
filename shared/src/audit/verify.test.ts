import { beforeAll, describe, expect, it } from 'vitest';
import { CONSORTIUM, at, makeCheckpoint, makePki, sampleLog, seal, sha, type TestPki } from './audit.testkit.js';
import { auditRecordHash, type AuditRecord } from './record.js';
import { formatAuditVerification, verifyAuditChain } from './verify.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});

const N = 12;
const fresh = (): AuditRecord[] => sampleLog(N);
const bad = (records: AuditRecord[]): { seq: number; position: number; reason: string } => {
  const result = verifyAuditChain(records, {});
  expect(result.ok).toBe(false);
  expect(result.firstBad).not.toBeNull();
  return result.firstBad!;
};

describe('verifyAuditChain: the hash chain', () => {
  it('accepts an intact log and reports its head', () => {
    const records = fresh();
    const result = verifyAuditChain(records, {});
    expect(result).toMatchObject({ ok: true, records: N, firstBad: null, uncheckpointed: N });
    expect(result.head).toEqual({ seq: N, hash: records[N - 1]!.hash });
    expect(formatAuditVerification(result)).toMatch(/^audit log OK: 12 records, head seq 12 [0-9a-f]{12}\.\.\., no signed checkpoint/);
  });

  it('accepts an empty log', () => {
    expect(verifyAuditChain([], {})).toMatchObject({ ok: true, records: 0, head: null, firstBad: null });
  });

  it('pins an edit that left the hash alone on the edited record', () => {
    const records = fresh();
    records[4] = { ...records[4]!, details: { ...records[4]!.details, bytes: 1 } };
    const found = bad(records);
    expect(found).toMatchObject({ seq: 5, position: 4 });
    expect(found.reason).toMatch(/hash mismatch: seq 5 .*edited/);
  });

  it('pins an edit whose own hash was recomputed on the next record, blaming the one before', () => {
    const records = fresh();
    const edited = { ...records[4]!, actor: 'system' };
    records[4] = { ...edited, hash: auditRecordHash(edited) };
    const found = bad(records);
    expect(found).toMatchObject({ seq: 6, position: 5 });
    expect(found.reason).toMatch(/prevHash mismatch: seq 6 .*record 5 was changed or replaced/);
  });

  it('names a deleted record', () => {
    const records = fresh();
    records.splice(6, 1);
    const found = bad(records);
    expect(found).toMatchObject({ seq: 7, position: 6, reason: 'seq 7 missing: seq 6 is followed by seq 8' });
  });

  it('names a deleted first record and a deleted run', () => {
    const first = fresh().slice(1);
    expect(bad(first)).toMatchObject({ seq: 1, position: 0, reason: 'seq 1 missing: the log starts at seq 2' });
    const run = fresh();
    run.splice(3, 3);
    expect(bad(run).reason).toBe('seqs 4..6 missing: seq 3 is followed by seq 7');
  });

  it('names a deletion the forger covered up by renumbering the later records', () => {
    const records = fresh();
    // Seq 7 is deleted and the later records renumbered down: the gap is at seq 7.
    records.splice(6, 1);
    for (let i = 6; i < records.length; i += 1) records[i] = { ...records[i]!, seq: i + 1 };
    const found = bad(records);
    expect(found).toMatchObject({ seq: 7, position: 6 });
    expect(found.reason).toMatch(/seq 7 was renumbered: .* as seq 8, so 1 record\(s\) before it were deleted/);
  });

  it('pins a forged record appended with a wrong prevHash', () => {
    const records = fresh();
    const forged = { ...records[N - 1]!, seq: N + 1, at: at(100), prevHash: sha('not the head') };
    records.push({ ...forged, hash: auditRecordHash(forged) });
    const found = bad(records);
    expect(found).toMatchObject({ seq: N + 1, position: N });
    expect(found.reason).toMatch(/prevHash mismatch: seq 13/);
  });

  it('pins a forged record inserted in the middle, with the later records renumbered', () => {
    // The forger links the forgery correctly: the first renumbered record gives it away, and pins the forgery.
    const records = fresh();
    const forgedBody = { ...records[4]!, seq: 6, at: at(4.5), details: { forged: true }, prevHash: records[4]!.hash };
    const forged = { ...forgedBody, hash: auditRecordHash(forgedBody) };
    const tail = records.slice(5).map((record) => ({ ...record, seq: record.seq + 1 }));
    const tampered = [...records.slice(0, 5), forged, ...tail];
    const found = bad(tampered);
    expect(found).toMatchObject({ seq: 6, position: 5 });
    expect(found.reason).toMatch(/seq 7 was renumbered: .* as seq 6, so 1 record\(s\) were inserted before it/);

    // A careless forgery is pinned on itself.
    const careless = [...records.slice(0, 5), { ...forged, hash: sha('made up') }, ...tail];
    expect(bad(careless)).toMatchObject({ seq: 6, position: 5 });
  });

  it('pins an inserted record that re-uses a seq', () => {
    const records = fresh();
    const tampered = [...records.slice(0, 5), records[4]!, ...records.slice(5)];
    expect(bad(tampered)).toMatchObject({ seq: 6, position: 5, reason: expect.stringMatching(/seq 5 appears again at position 5/) });
  });

  it('pins a reordering on the first of the swapped records', () => {
    const records = fresh();
    const [a, b] = [records[7]!, records[8]!];
    // Contents swapped, seq order kept.
    const swapped = [...records];
    swapped[7] = { ...b, seq: 8 };
    swapped[8] = { ...a, seq: 9 };
    const found = bad(swapped);
    expect(found).toMatchObject({ seq: 8, position: 7 });
    expect(found.reason).toMatch(/swapped \(reordered\)/);

    // Whole records swapped, seqs and all.
    const moved = [...records];
    moved[7] = b;
    moved[8] = a;
    expect(bad(moved)).toMatchObject({ seq: 8, position: 7, reason: expect.stringMatching(/seq 9 comes before seq 8 .*reordered/) });
  });

  it('treats a malformed record as bad', () => {
    const records = fresh();
    records[2] = { ...records[2]!, kind: 'NotAKind' };
    const found = bad(records);
    expect(found).toMatchObject({ seq: 3, position: 2 });
    expect(found.reason).toMatch(/malformed: kind: must be dotted lower-case words/);
  });

  it('says when the start of the log was replaced', () => {
    const records = fresh();
    const first = { ...records[0]!, prevHash: sha('elsewhere') };
    records[0] = { ...first, hash: auditRecordHash(first) };
    expect(bad(records).reason).toMatch(/not the genesis hash/);
  });
});

describe('verifyAuditChain: signed checkpoints', () => {
  const withCheckpoints = (records: AuditRecord[], seqs: number[]) =>
    seqs.map((seq) => makeCheckpoint(records[seq - 1]!, pki.server, at(seq + 0.5)));

  it('verifies checkpoints and counts the records after the latest', () => {
    const records = fresh();
    const checkpoints = withCheckpoints(records, [8, 4]);
    const result = verifyAuditChain(records, { checkpoints, caPem: pki.caPem, consortium: CONSORTIUM });
    expect(result).toMatchObject({ ok: true, uncheckpointed: 4 });
    expect(result.checkpoints).toEqual({ total: 2, verified: 2, latest: { seq: 8, at: at(8.5) }, failures: [] });
    expect(formatAuditVerification(result)).toContain('2 signed checkpoint(s) verified (latest seq 8 at 2025-06-01T10:00:08.500Z), 4 record(s) after it');
  });

  it('catches truncation', () => {
    const records = fresh();
    const checkpoints = withCheckpoints(records, [4, 10]);
    const result = verifyAuditChain(records.slice(0, 7), { checkpoints, caPem: pki.caPem });
    const reason = `the log ends at seq 7 but a checkpoint signed at ${at(10.5)} covers seq 10: records 8..10 were deleted`;
    expect(result.ok).toBe(false);
    expect(result.checkpoints.failures).toEqual([{ seq: 10, reason }]);
    expect(result.firstBad).toEqual({ seq: 8, position: 7, reason });
    expect(formatAuditVerification(result)).toContain('audit log BROKEN at record 8');
  });

  it('catches a consistent rewrite and dates its start from the last matching checkpoint', () => {
    const records = fresh();
    const checkpoints = withCheckpoints(records, [3, 6, 10]);
    const edited = [...records];
    edited[7] = { ...edited[7]!, details: { rewritten: true } };
    const rewritten = seal(edited, 7);
    expect(verifyAuditChain(rewritten, {}).ok).toBe(true); // the chain alone cannot tell
    const result = verifyAuditChain(rewritten, { checkpoints, caPem: pki.caPem, consortium: CONSORTIUM });
    expect(result.ok).toBe(false);
    expect(result.firstBad).toMatchObject({ seq: 7, position: 6 });
    expect(result.firstBad!.reason).toMatch(/checkpoint for seq 10 .*rewritten consistently.*checkpoint for seq 6 .*after seq 6/);
    expect(result.checkpoints).toMatchObject({ verified: 2, latest: { seq: 6 } });
    expect(result.uncheckpointed).toBe(6);
  });

  it('rejects checkpoints that cannot testify', () => {
    const records = fresh();
    const [good, tampered, foreign, wrongConsortium, wrongPrint] = withCheckpoints(records, [2, 4, 6, 8, 10]);
    const checkpoints = [
      good!,
      { ...tampered!, hash: records[4]!.hash },
      makeCheckpoint(records[5]!, pki.strangerServer, foreign!.at),
      makeCheckpoint(records[7]!, pki.server, wrongConsortium!.at, 'Other consortium'),
      { ...wrongPrint!, certificateFingerprint: makeCheckpoint(records[9]!, pki.strangerServer, wrongPrint!.at).certificateFingerprint },
    ];
    const result = verifyAuditChain(records, { checkpoints, caPem: pki.caPem, consortium: CONSORTIUM });
    expect(result.ok).toBe(false);
    expect(result.firstBad).toBeNull();
    expect(result.checkpoints.verified).toBe(1);
    const reasons = result.checkpoints.failures.map((f) => `${f.seq}: ${f.reason}`);
    expect(reasons).toEqual([
      expect.stringMatching(/^4: .*signature does not verify/),
      expect.stringMatching(/^6: .*certificate is not trusted/),
      expect.stringMatching(/^8: .*consortium "Other consortium"/),
      expect.stringMatching(/^10: .*names certificate/),
    ]);
    expect(formatAuditVerification(result)).toMatch(/^audit log NOT VERIFIED: 4 checkpoint\(s\) failed/);
  });

  it('checks the certificate at the checkpoint time', () => {
    const records = fresh();
    const early = makeCheckpoint(records[3]!, pki.server, '2024-06-01T00:00:00.000Z');
    const result = verifyAuditChain(records, { checkpoints: [early], caPem: pki.caPem });
    expect(result.checkpoints.failures[0]!.reason).toMatch(/not trusted at 2024-06-01T00:00:00.000Z/);
    // Without a CA only the signature is checked.
    expect(verifyAuditChain(records, { checkpoints: [early] }).ok).toBe(true);
  });
});
