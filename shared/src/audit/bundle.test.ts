import { beforeAll, describe, expect, it } from 'vitest';
import { signCanonical } from '../pki/signing.js';
import { canonicalJson } from '../study/canonical-json.js';
import { CONSORTIUM, at, makeCheckpoint, makePki, sampleLog, seal, type TestPki } from './audit.testkit.js';
import {
  AUDIT_BUNDLE_FORMAT,
  AUDIT_BUNDLE_SIGNATURE_TYPE,
  AuditBundleError,
  formatAuditBundleVerification,
  parseAuditBundle,
  verifyAuditBundle,
  writeAuditBundle,
} from './bundle.js';
import type { AuditCheckpoint, AuditRecord } from './record.js';

let pki: TestPki;
let records: AuditRecord[];
let checkpoints: AuditCheckpoint[];
const exportedAt = new Date(at(60));

beforeAll(async () => {
  pki = await makePki();
  records = sampleLog(10);
  checkpoints = [makeCheckpoint(records[3]!, pki.server, at(4)), makeCheckpoint(records[7]!, pki.server, at(8))];
});

function bundle(overrides: { records?: AuditRecord[]; checkpoints?: AuditCheckpoint[]; signer?: TestPki['server'] } = {}): string {
  const signer = overrides.signer ?? pki.server;
  return writeAuditBundle({
    consortium: CONSORTIUM,
    exportedAt,
    records: overrides.records ?? records,
    checkpoints: overrides.checkpoints ?? checkpoints,
    certificatePem: signer.certificatePem,
    privateKeyPem: signer.privateKeyPem,
  });
}

function parseError(text: string): string[] {
  try {
    parseAuditBundle(text);
  } catch (error) {
    expect(error).toBeInstanceOf(AuditBundleError);
    return (error as AuditBundleError).issues;
  }
  throw new Error('expected the bundle to be rejected');
}

describe('audit bundle', () => {
  it('writes canonical JSON lines and reads them back', () => {
    const text = bundle();
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(1 + 10 + 2 + 1);
    for (const line of lines) expect(line).toBe(canonicalJson(JSON.parse(line)));
    expect(JSON.parse(lines[0]!)).toMatchObject({ type: 'header', format: AUDIT_BUNDLE_FORMAT, consortium: CONSORTIUM, records: 10, checkpoints: 2 });
    expect(JSON.parse(lines[13]!)).toMatchObject({ type: 'signature' });

    const parsed = parseAuditBundle(text);
    expect(parsed.records).toEqual(records);
    expect(parsed.checkpoints).toEqual(checkpoints);
    expect(parsed.header.exportedAt).toBe(exportedAt.toISOString());
    expect(parsed.contentSha256).toBe(parsed.signature.sha256);
  });

  it('verifies a round trip', () => {
    const result = verifyAuditBundle(bundle(), pki.caPem);
    expect(result.ok).toBe(true);
    expect(result).toMatchObject({ records: 10, firstBad: null, uncheckpointed: 2 });
    expect(result.checkpoints).toMatchObject({ total: 2, verified: 2, latest: { seq: 8 } });
    expect(result.bundle).toMatchObject({ consortium: CONSORTIUM, exportedAt: exportedAt.toISOString(), signatureOk: true, certificate: { ok: true } });
    expect(result.bundle.certificate.subject).toContain('coordinator.example.org');
    expect(formatAuditBundleVerification(result)).toMatch(/: OK\n {2}bundle signature OK\n {2}signing certificate trusted\naudit log OK: 10 records/);
  });

  it('writes records in seq order whatever order they are given in', () => {
    const parsed = parseAuditBundle(bundle({ records: [...records].reverse() }));
    expect(parsed.records.map((r) => r.seq)).toEqual(records.map((r) => r.seq));
  });

  it('fails the signature and names the record when a record line is edited', () => {
    const lines = bundle().split('\n');
    const record = JSON.parse(lines[6]!) as AuditRecord & { type: string };
    lines[6] = canonicalJson({ ...record, actor: 'system' });
    const result = verifyAuditBundle(lines.join('\n'), pki.caPem);
    expect(result.ok).toBe(false);
    expect(result.bundle.signatureOk).toBe(false);
    expect(result.bundle.signatureReason).toMatch(/does not match the bundle's content/);
    expect(result.bundle.certificate.ok).toBe(true);
    expect(result.firstBad).toMatchObject({ seq: 6, position: 5, reason: expect.stringMatching(/hash mismatch: seq 6/) });
    expect(formatAuditBundleVerification(result)).toContain('bundle signature BAD');
  });

  it('rejects a bundle signed with a certificate from another CA', () => {
    const result = verifyAuditBundle(bundle({ signer: pki.strangerServer }), pki.caPem);
    expect(result.ok).toBe(false);
    expect(result.bundle.signatureOk).toBe(true);
    expect(result.bundle.certificate).toMatchObject({ ok: false, reason: expect.stringMatching(/signature does not verify with the CA's key/) });
    expect(formatAuditBundleVerification(result)).toContain('signing certificate NOT TRUSTED');
  });

  it('rejects a signature made with another key', () => {
    const genuine = bundle().split('\n');
    const { sha256 } = JSON.parse(genuine[genuine.length - 2]!) as { sha256: string };
    const statement = { type: AUDIT_BUNDLE_SIGNATURE_TYPE, sha256, consortium: CONSORTIUM, exportedAt: exportedAt.toISOString() };
    const signature = signCanonical(statement, pki.strangerServer.privateKeyPem);
    genuine[genuine.length - 2] = canonicalJson({ type: 'signature', sha256, signature });
    const result = verifyAuditBundle(genuine.join('\n'), pki.caPem);
    expect(result.bundle).toMatchObject({ signatureOk: false, signatureReason: expect.stringMatching(/does not verify with the header's certificate/) });
  });

  it('says what is missing from a truncated bundle', () => {
    const lines = bundle().split('\n');
    const cut = `${lines.slice(0, -3).join('\n')}\n`;
    expect(parseError(cut)).toEqual([
      'the header announces 2 checkpoint line(s) but the bundle holds 1',
      'the bundle ends at line 12 without its signature line: it was truncated',
    ]);
    const midLine = bundle().slice(0, 2000);
    expect(parseError(midLine)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^line \d+: not JSON/), expect.stringMatching(/without its signature line/)]),
    );
  });

  it('names the line and field of a malformed line', () => {
    const lines = bundle().split('\n');
    const record = JSON.parse(lines[6]!) as Record<string, unknown>;
    lines[6] = canonicalJson({ ...record, hash: 'xyz' });
    expect(parseError(lines.join('\n'))).toEqual(['line 7: record.hash: must be a lower-case hex SHA-256']);

    const header = JSON.parse(lines[0]!) as Record<string, unknown>;
    const noConsortium = [canonicalJson({ ...header, consortium: undefined, extra: 1 }), ...lines.slice(1)].join('\n');
    expect(parseError(noConsortium)).toEqual(expect.arrayContaining([expect.stringMatching(/^line 1: header\.consortium: /)]));
  });

  it('rejects lines out of order and an empty bundle', () => {
    const lines = bundle().split('\n');
    const swapped = [lines[0]!, lines[11]!, ...lines.slice(1, 11), ...lines.slice(12)];
    expect(parseError(swapped.join('\n'))).toContain(
      'line 3: a record after the checkpoint lines: lines go header, records, checkpoints, signature',
    );
    expect(parseError('')).toEqual(['the bundle is empty']);
    expect(parseError(`${lines[1]}\n`)[0]).toBe('line 1: the first line must be the header, not a record');
  });

  it('catches a checkpoint that contradicts a consistently rewritten chain', () => {
    const edited = [...records];
    edited[5] = { ...edited[5]!, details: { rewritten: true } };
    // The coordinator itself rewrites and re-signs: only the earlier checkpoint can tell.
    const result = verifyAuditBundle(bundle({ records: seal(edited, 5) }), pki.caPem);
    expect(result.bundle).toMatchObject({ signatureOk: true, certificate: { ok: true } });
    expect(result.ok).toBe(false);
    expect(result.firstBad).toMatchObject({ seq: 5, position: 4 });
    expect(result.firstBad!.reason).toMatch(/checkpoint for seq 8 .*checkpoint for seq 4/);
    expect(result.checkpoints.failures).toHaveLength(1);
  });

  it('refuses to sign with a key that is not the certificate’s', () => {
    expect(() =>
      writeAuditBundle({
        consortium: CONSORTIUM,
        exportedAt,
        records,
        checkpoints,
        certificatePem: pki.server.certificatePem,
        privateKeyPem: pki.strangerServer.privateKeyPem,
      }),
    ).toThrow(AuditBundleError);
  });
});
