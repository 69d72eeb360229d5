import { beforeAll, describe, expect, it } from 'vitest';
import { signCanonical } from '../pki/signing.js';
import { SiteScenario, at, makePki, sha, type TestPki } from './audit.testkit.js';
import { receiptSignedBody, type UpdateReceipt } from './receipt.js';
import { ReconcileError, formatReconcileReport, reconcileLedger } from './reconcile.js';
import type { AuditRecord } from './record.js';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});

const SITE = 'hospital-a';

/**
 * Ledger lines: 1 opened, 2 registration, 3 dataset-summary, 4 update r1, 5 receipt, 6 metrics r1, 7 update r2,
 * 8 receipt. Audit seqs: 1 study.created, 2 registration, 3 dataset-summary, 4 hospital-b, 5 update r1,
 * 6 metrics r1, 7 hospital-b update, 8 update r2, 9 round closed (t 30).
 */
function standard(extend?: (s: SiteScenario) => void): { s: SiteScenario; u1: { ledgerSeq: number; auditSeq: number }; u2: { ledgerSeq: number; auditSeq: number } } {
  const s = new SiteScenario(SITE, pki.server);
  s.other({ at: at(0), kind: 'study.created', actor: 'token:admin', studyId: 'lesion-1', round: null, siteId: null, details: {} });
  s.send('registration', { studyId: null, payload: 'register hospital-a', t: 1 });
  s.send('dataset-summary', { payload: 'summary of hospital-a', t: 2 });
  s.other({
    at: at(2.5),
    kind: 'site.registered',
    actor: 'site:hospital-b',
    studyId: null,
    round: null,
    siteId: 'hospital-b',
    details: { message: 'registration', sha256: sha('register hospital-b'), bytes: 19 },
  });
  const u1 = s.send('update', { round: 1, payload: 'update round 1', t: 10 }) as { ledgerSeq: number; auditSeq: number };
  s.receipt(u1.ledgerSeq, u1.auditSeq, 10.2);
  s.send('metrics', { round: 1, payload: 'metrics round 1', t: 11 });
  s.other({
    at: at(12),
    kind: 'update.received',
    actor: 'site:hospital-b',
    studyId: 'lesion-1',
    round: 1,
    siteId: 'hospital-b',
    // Same bytes as hospital-a's update: another site's record must never match.
    details: { message: 'update', sha256: sha('update round 2'), bytes: 14 },
  });
  const u2 = s.send('update', { round: 2, payload: 'update round 2', t: 20 }) as { ledgerSeq: number; auditSeq: number };
  s.receipt(u2.ledgerSeq, u2.auditSeq, 20.2);
  extend?.(s);
  s.other({ at: at(30), kind: 'round.closed', actor: 'system', studyId: 'lesion-1', round: 2, siteId: null, details: {} });
  return { s, u1, u2 };
}

const withDetails = (record: AuditRecord, details: Record<string, unknown>): AuditRecord => ({ ...record, details: { ...record.details, ...details } });

describe('reconcileLedger', () => {
  it('matches a faithful ledger and audit log', () => {
    const { ledger, audit } = standard().s.build();
    const report = reconcileLedger(ledger, audit, { caPem: pki.caPem, siteId: SITE });
    expect(report).toMatchObject({
      ok: true,
      siteId: SITE,
      ledgerEntries: 8,
      auditRecords: 5,
      auditRange: { firstSeq: 1, lastSeq: 9, lastAt: at(30) },
      matched: 5,
      refused: [],
      missing: [],
      extra: [],
      altered: [],
      notCovered: [],
      receipts: { verified: 2, unsigned: 0, failures: [] },
    });
    expect(formatReconcileReport(report)).toBe(
      'reconcile site hospital-a: OK: 8 ledger entries, 5 audit records for the site; 5 matched, 0 refused, 0 missing, 0 extra, 0 altered, 0 not covered; receipts: 2 verified, 0 failed',
    );
  });

  it('reports an update the coordinator has no record of, and the receipt its log no longer backs', () => {
    const { ledger, audit } = standard().s.build();
    const report = reconcileLedger(ledger, audit.filter((record) => record.seq !== 8), { caPem: pki.caPem });
    expect(report.ok).toBe(false);
    expect(report.matched).toBe(4);
    expect(report.missing).toEqual([
      expect.objectContaining({ kind: 'update', studyId: 'lesion-1', round: 2, ledgerLine: 7, ledgerSeq: 7, auditSeq: null, sha256: sha('update round 2') }),
    ]);
    expect(report.altered).toEqual([expect.objectContaining({ ledgerLine: 8, auditSeq: 8, reason: expect.stringMatching(/record is not in the log/) })]);
    const text = formatReconcileReport(report);
    expect(text).toContain(
      `MISSING  ledger line 7 (seq 7): update for study lesion-1 round 2, sha256 ${sha('update round 2').slice(0, 12)}..., 14 bytes, sent at ${at(20)}; the coordinator has no record of it`,
    );
    expect(text).toMatch(/^reconcile site hospital-a: FAILED/);
  });

  it('reports a forged update attributed to the site', () => {
    const { s } = standard((scenario) =>
      scenario.other({
        at: at(25),
        kind: 'update.received',
        actor: `site:${SITE}`,
        studyId: 'lesion-1',
        round: 3,
        siteId: SITE,
        details: { message: 'update', sha256: sha('forged'), bytes: 6 },
      }),
    );
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, {});
    expect(report.ok).toBe(false);
    expect(report.extra).toEqual([expect.objectContaining({ kind: 'update', round: 3, auditSeq: 9, ledgerLine: null, sha256: sha('forged') })]);
    expect(report.extra[0]!.reason).toMatch(/^the coordinator recorded an update from hospital-a that the site's ledger does not contain/);
    expect(formatReconcileReport(report)).toContain('EXTRA    audit seq 9: the coordinator recorded an update from hospital-a');
  });

  it('reports an update whose recorded hash differs, with both locations and hashes', () => {
    const { ledger, audit } = standard().s.build();
    const tampered = audit.map((record) => (record.seq === 5 ? withDetails(record, { sha256: sha('something else') }) : record));
    const report = reconcileLedger(ledger, tampered, { caPem: pki.caPem });
    expect(report.ok).toBe(false);
    expect(report.missing).toEqual([]);
    expect(report.extra).toEqual([]);
    expect(report.altered).toHaveLength(2);
    expect(report.altered[0]).toMatchObject({
      kind: 'update',
      round: 1,
      ledgerLine: 4,
      ledgerSeq: 4,
      auditSeq: 5,
      ledgerSha256: sha('update round 1'),
      auditSha256: sha('something else'),
    });
    // The coordinator's own signed receipt contradicts its log too.
    expect(report.altered[1]).toMatchObject({ ledgerLine: 5, auditSeq: 5, reason: expect.stringMatching(/no longer says what it signed/) });
    expect(formatReconcileReport(report)).toMatch(/ALTERED {2}ledger line 4 \(seq 4\) \/ audit seq 5: update for study lesion-1 round 1: the site sent sha256/);
  });

  it('reports a byte count that differs under the same hash as altered', () => {
    const { s } = standard();
    s.send('metrics', { round: 2, payload: 'metrics round 2', t: 21 });
    const { ledger, audit } = s.build();
    const tampered = audit.map((record) => (record.kind === 'site.metrics' && record.round === 2 ? withDetails(record, { bytes: 1 }) : record));
    const report = reconcileLedger(ledger, tampered, {});
    expect(report.altered).toEqual([expect.objectContaining({ ledgerBytes: 15, auditBytes: 1, reason: expect.stringMatching(/sha256 agrees but/) })]);
  });

  it('accepts a resend the coordinator refused as a duplicate', () => {
    const { s } = standard((scenario) => {
      scenario.send('update', { round: 2, payload: 'update round 2', t: 21, audit: 'refused', reason: 'duplicate update for round 2' });
      scenario.send('update', { round: 2, payload: 'update round 2', t: 22, audit: 'refused', reason: 'duplicate update for round 2' });
    });
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, { caPem: pki.caPem });
    expect(report.ok).toBe(true);
    expect(report.matched).toBe(5);
    expect(report.refused).toEqual([
      expect.objectContaining({ ledgerLine: 9, auditSeq: 9, reason: expect.stringMatching(/refused by the coordinator: duplicate update for round 2$/) }),
      expect.objectContaining({ ledgerLine: 10, auditSeq: 10 }),
    ]);
    expect(formatReconcileReport(report)).toContain('REFUSED  ledger line 9 (seq 9) / audit seq 9: update for study lesion-1 round 2');
  });

  it('matches a resend the coordinator accepted twice one to one', () => {
    const { s } = standard((scenario) => scenario.send('metrics', { round: 1, payload: 'metrics round 1', t: 21 }));
    const { ledger, audit } = s.build();
    expect(reconcileLedger(ledger, audit, {})).toMatchObject({ ok: true, matched: 6 });
    // Without the second record the resend has no twin.
    const report = reconcileLedger(ledger, audit.filter((record) => record.seq !== 9), {});
    expect(report.missing).toEqual([expect.objectContaining({ ledgerLine: 9, kind: 'metrics' })]);
  });

  it('fails a receipt whose signature does not verify', () => {
    const { s } = standard();
    const entry = s.ledger[4]!;
    const receipt = entry.receipt!;
    const forged: UpdateReceipt = { ...receipt, receivedBytes: 999 };
    // Re-signed with a key that is not the certificate's.
    entry.receipt = { ...forged, signature: signCanonical(receiptSignedBody(forged), pki.strangerServer.privateKeyPem) };
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, { caPem: pki.caPem });
    expect(report.ok).toBe(false);
    expect(report.receipts.verified).toBe(1);
    expect(report.receipts.failures).toEqual([
      { ledgerLine: 5, ledgerSeq: 5, reason: 'the receipt says receivedBytes 999 but update entry seq 4 has 14' },
      { ledgerLine: 5, ledgerSeq: 5, reason: 'its signature does not verify with its certificate: the receipt was altered or forged' },
    ]);
    // A forged receipt is not the coordinator's word, so it does not make the log "altered".
    expect(report.altered).toEqual([]);
    expect(formatReconcileReport(report)).toContain('RECEIPT  ledger line 5 (seq 5): its signature does not verify');
  });

  it('fails a receipt signed by a certificate outside the consortium', () => {
    const { s, u2 } = standard();
    s.ledger.pop();
    s.receipt(u2.ledgerSeq, u2.auditSeq, 20.2, pki.strangerServer);
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, { caPem: pki.caPem });
    expect(report.receipts.failures).toEqual([expect.objectContaining({ ledgerLine: 8, reason: expect.stringMatching(/^its certificate is not trusted: /) })]);
    // Without the CA, only the signature itself can be checked.
    expect(reconcileLedger(ledger, audit, {}).receipts).toMatchObject({ verified: 2, failures: [] });
  });

  it('fails unsigned receipts only when a CA is given', () => {
    const { s, u2 } = standard();
    s.ledger.pop();
    s.receipt(u2.ledgerSeq, u2.auditSeq, 20.2, null);
    const { ledger, audit } = s.build();
    expect(reconcileLedger(ledger, audit, {})).toMatchObject({ ok: true, receipts: { verified: 1, unsigned: 1, failures: [] } });
    const strict = reconcileLedger(ledger, audit, { caPem: pki.caPem });
    expect(strict.ok).toBe(false);
    expect(strict.receipts.failures).toEqual([{ ledgerLine: 8, ledgerSeq: 8, reason: 'unsigned (coordinator ran without a kit)' }]);
  });

  it('reports a receipt whose audit record says something else as altered', () => {
    const { s, u1, u2 } = standard();
    s.ledger.pop();
    s.receipt(u2.ledgerSeq, u1.auditSeq, 20.2);
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, { caPem: pki.caPem });
    expect(report.ok).toBe(false);
    expect(report.receipts).toMatchObject({ verified: 2, failures: [] });
    expect(report.altered).toEqual([
      expect.objectContaining({
        kind: 'update',
        ledgerLine: 8,
        auditSeq: 5,
        ledgerSha256: sha('update round 2'),
        auditSha256: sha('update round 1'),
        reason: expect.stringMatching(/that record records sha256 .*, not .*, names round 1, not 2: the coordinator's log no longer says what it signed/),
      }),
    ]);
  });

  it('fails a receipt that points at the wrong ledger entry', () => {
    const { s } = standard();
    s.ledger[7] = { ...s.ledger[7]!, refSeq: 6 };
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, {});
    expect(report.receipts.failures).toEqual([{ ledgerLine: 8, ledgerSeq: 8, reason: 'its refSeq 6 points at a metrics entry, not an update' }]);
  });

  it('lists messages after the end of the audit extract as not covered', () => {
    const { s } = standard();
    s.send('metrics', { round: 2, payload: 'metrics round 2', t: 34, audit: 'none' });
    s.send('update', { round: 3, payload: 'update round 3', t: 100, audit: 'none' });
    const { ledger, audit } = s.build();
    const report = reconcileLedger(ledger, audit, {});
    // Sent within the clock slack of the extract's end, after everything it holds: it may have arrived after the
    // export, so it is not judged; one well after the end is not covered either.
    expect(report.missing).toEqual([]);
    expect(report.notCovered).toEqual([
      expect.objectContaining({ ledgerLine: 9, kind: 'metrics', reason: expect.stringMatching(/sent as the audit extract ends .* export again to judge it$/) }),
      expect.objectContaining({ ledgerLine: 10, kind: 'update', reason: expect.stringMatching(/after the audit extract ends \(its last record is at 2025-06-01T10:00:30.000Z\)$/) }),
    ]);

    // A message the extract holds that was sent after the dropped one makes it missing, however close to the end.
    const { s: dropped } = standard();
    dropped.send('metrics', { round: 2, payload: 'metrics round 2', t: 29, audit: 'none' });
    dropped.send('metrics', { round: 2, payload: 'validation round 2', t: 29.5 });
    const droppedReport = reconcileLedger(dropped.build().ledger, dropped.build().audit, {});
    expect(droppedReport.missing).toEqual([expect.objectContaining({ ledgerLine: 9, kind: 'metrics', reason: expect.stringMatching(/the coordinator has no record of it$/) })]);
    expect(droppedReport.notCovered).toEqual([]);

    // An extract cut short leaves later messages and receipts unjudged.
    const early = reconcileLedger(ledger, audit.slice(0, 3), {});
    expect(early.notCovered.map((item) => item.ledgerLine)).toEqual([4, 6, 7, 9, 10]);
    expect(early).toMatchObject({ ok: true, missing: [], altered: [], matched: 2, receipts: { verified: 2 } });
    expect(formatReconcileReport(early)).toContain('NOT COVERED  ledger line 6 (seq 6): metrics for study lesion-1 round 1');

    // One that starts late leaves earlier messages unjudged too.
    const late = reconcileLedger(ledger, audit.slice(4), {});
    expect(late.notCovered.map((item) => item.ledgerLine)).toEqual([2, 3, 9, 10]);
    expect(late.notCovered[0]!.reason).toMatch(/before the audit extract starts \(at seq 5, /);
  });

  it('only judges the site the ledger belongs to', () => {
    const { ledger, audit } = standard().s.build();
    expect(() => reconcileLedger(ledger, audit, { siteId: 'hospital-b' })).toThrow(ReconcileError);
    expect(() => reconcileLedger([], audit, {})).toThrow(/pass the site id/);
    const other = reconcileLedger([], audit, { siteId: 'hospital-b' });
    expect(other).toMatchObject({ ok: false, auditRecords: 2, extra: [expect.objectContaining({ kind: 'registration' }), expect.objectContaining({ kind: 'update' })] });
    expect(() => reconcileLedger([...ledger, { ...ledger[1]!, siteId: 'hospital-b' }], audit, {})).toThrow(/several sites/);
  });
});
