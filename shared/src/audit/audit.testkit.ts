import { createHash } from 'node:crypto';
import { LEDGER_GENESIS_HASH, ledgerEntryHash, type LedgerEntry, type LedgerEntryBody } from '../ledger/entry.js';
import { certificateFingerprint } from '../pki/certificate.js';
import { createRootCa, issueServerCertificate, type IssuedCertificate } from '../pki/issue.js';
import { signCanonical } from '../pki/signing.js';
import { receiptSignedBody, type UpdateReceipt } from './receipt.js';
import {
  AUDIT_GENESIS_HASH,
  AUDIT_KIND_OF_SITE_MESSAGE,
  AUDIT_KIND_SITE_MESSAGE_REFUSED,
  auditRecordHash,
  checkpointSignedBody,
  type AuditCheckpoint,
  type AuditRecord,
  type AuditRecordBody,
  type SiteMessageKind,
} from './record.js';

/** Fixed times, inside the validity of the test certificates below, so every run builds the same records. */
export const T0 = Date.parse('2025-06-01T10:00:00.000Z');
export const at = (seconds: number): string => new Date(T0 + seconds * 1000).toISOString();
export const sha = (text: string): string => createHash('sha256').update(text).digest('hex');
export const CONSORTIUM = 'Example consortium';

export interface TestPki {
  caPem: string;
  server: IssuedCertificate;
  /** A server certificate from an unrelated CA. */
  strangerServer: IssuedCertificate;
}

export async function makePki(): Promise<TestPki> {
  const notBefore = new Date('2025-01-01T00:00:00.000Z');
  const root = await createRootCa({ organization: CONSORTIUM, notBefore, curve: 'P-256' });
  const ca = { certificatePem: root.certificatePem, privateKeyPem: root.privateKeyPem };
  const server = await issueServerCertificate(ca, { dnsNames: ['coordinator.example.org'], notBefore });
  const stranger = await createRootCa({ organization: CONSORTIUM, notBefore, curve: 'P-256' });
  const strangerCa = { certificatePem: stranger.certificatePem, privateKeyPem: stranger.privateKeyPem };
  const strangerServer = await issueServerCertificate(strangerCa, { dnsNames: ['coordinator.example.org'], notBefore });
  return { caPem: root.certificatePem, server, strangerServer };
}

export type RecordInput = Omit<AuditRecordBody, 'seq' | 'prevHash'>;

/** Numbers, links and hashes records from `from` on, as the coordinator (or a thorough forger) would. */
export function seal(records: Array<RecordInput | AuditRecord>, from = 0): AuditRecord[] {
  const out: AuditRecord[] = records.slice(0, from) as AuditRecord[];
  for (let i = from; i < records.length; i += 1) {
    const { hash: _hash, seq: _seq, prevHash: _prev, ...rest } = records[i] as AuditRecord;
    const body: AuditRecordBody = { ...rest, seq: i + 1, prevHash: i === 0 ? AUDIT_GENESIS_HASH : out[i - 1]!.hash };
    out.push({ ...body, hash: auditRecordHash(body) });
  }
  return out;
}

/** A plausible log of `n` records: studies, site messages and administrative events. */
export function sampleLog(n: number): AuditRecord[] {
  const inputs: RecordInput[] = [];
  for (let i = 0; i < n; i += 1) {
    const site = i % 2 === 0 ? 'hospital-a' : 'hospital-b';
    inputs.push(
      i % 3 === 0
        ? { at: at(i), kind: 'study.updated', actor: 'token:admin', studyId: 'lesion-1', round: null, siteId: null, details: { change: i } }
        : {
            at: at(i),
            kind: 'update.received',
            actor: `site:${site}`,
            studyId: 'lesion-1',
            round: i,
            siteId: site,
            details: { message: 'update', sha256: sha(`update ${i}`), bytes: 1000 + i },
          },
    );
  }
  return seal(inputs);
}

export function makeCheckpoint(record: AuditRecord, server: IssuedCertificate, when: string, consortium = CONSORTIUM): AuditCheckpoint {
  const unsigned = {
    seq: record.seq,
    hash: record.hash,
    at: when,
    consortium,
    certificateFingerprint: certificateFingerprint(server.certificatePem),
  };
  return { ...unsigned, certificatePem: server.certificatePem, signature: signCanonical(checkpointSignedBody(unsigned), server.privateKeyPem) };
}

type LedgerInput = Omit<LedgerEntryBody, 'seq' | 'prevHash' | 'siteId'>;

/**
 * A site's ledger and the coordinator's audit log, built side by side: `send` writes the ledger entry and, as the
 * coordinator would, its audit record; tests then damage either side.
 */
export class SiteScenario {
  readonly ledger: LedgerInput[] = [];
  readonly audit: RecordInput[] = [];

  constructor(
    readonly siteId: string,
    private readonly server: IssuedCertificate | null,
  ) {
    this.ledger.push(this.entry('opened', null, null, 0, null, 0));
  }

  private entry(kind: LedgerInput['kind'], studyId: string | null, round: number | null, bytes: number, sha256: string | null, t: number): LedgerInput {
    return { at: at(t), kind, studyId, round, bytes, sha256, encrypted: false, encryption: null, detail: {} };
  }

  /** Returns the ledger seq and the audit seq (null when not recorded). */
  send(
    kind: SiteMessageKind,
    options: { studyId?: string | null; round?: number | null; payload: string; t: number; audit?: 'accepted' | 'refused' | 'none'; reason?: string },
  ): { ledgerSeq: number; auditSeq: number | null } {
    const studyId = options.studyId === undefined ? 'lesion-1' : options.studyId;
    const round = options.round === undefined ? null : options.round;
    const bytes = Buffer.byteLength(options.payload);
    const sha256 = sha(options.payload);
    this.ledger.push(this.entry(kind, studyId, round, bytes, sha256, options.t));
    const ledgerSeq = this.ledger.length;
    const mode = options.audit ?? 'accepted';
    if (mode === 'none') return { ledgerSeq, auditSeq: null };
    const refused = mode === 'refused';
    this.audit.push({
      at: at(options.t + 0.1),
      kind: refused ? AUDIT_KIND_SITE_MESSAGE_REFUSED : AUDIT_KIND_OF_SITE_MESSAGE[kind],
      actor: `site:${this.siteId}`,
      studyId,
      round,
      siteId: this.siteId,
      details: { message: kind, sha256, bytes, ...(refused ? { reason: options.reason ?? 'refused' } : {}) },
    });
    return { ledgerSeq, auditSeq: this.audit.length };
  }

  /** The coordinator's receipt for the update at `ledgerSeq`, recorded as audit `auditSeq`, kept in the ledger. */
  receipt(ledgerSeq: number, auditSeq: number, t: number, signer: IssuedCertificate | null = this.server): UpdateReceipt {
    const update = this.ledger[ledgerSeq - 1]!;
    const body = {
      siteId: this.siteId,
      studyId: update.studyId ?? '',
      round: update.round ?? 0,
      sha256: update.sha256 ?? '',
      receivedBytes: update.bytes,
      receivedAtUnixMs: T0 + t * 1000,
      auditSeq,
    };
    const receipt: UpdateReceipt =
      signer === null
        ? { ...body, signature: '', certificatePem: '' }
        : { ...body, signature: signCanonical(receiptSignedBody(body), signer.privateKeyPem), certificatePem: signer.certificatePem };
    this.ledger.push({ ...this.entry('receipt', null, null, 0, null, t), refSeq: ledgerSeq, receipt });
    return receipt;
  }

  other(record: RecordInput): void {
    this.audit.push(record);
  }

  build(): { ledger: LedgerEntry[]; audit: AuditRecord[] } {
    const ledger: LedgerEntry[] = [];
    for (const [i, input] of this.ledger.entries()) {
      const body: LedgerEntryBody = { ...input, siteId: this.siteId, seq: i + 1, prevHash: i === 0 ? LEDGER_GENESIS_HASH : ledger[i - 1]!.hash };
      ledger.push({ ...body, hash: ledgerEntryHash(body) });
    }
    return { ledger, audit: seal(this.audit) };
  }
}
