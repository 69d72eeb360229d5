import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createRootCa,
  issueServerCertificate,
  receiptSignedBody,
  signCanonical,
  type IssuedCertificate,
  type LedgerEntry,
  type UpdateReceipt,
} from '@federa/shared';
import { PrivacyLedger, type LedgerEncryption, type LedgerOpening } from './ledger.js';

/** Helpers shared by the ledger tests (excluded from the build by the *.testkit.ts pattern). */

export function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'federa-ledger-'));
}

export const OPENING: LedgerOpening = { siteId: 'hospital-a', certificateFingerprint: 'AB:CD:EF', agentVersion: '0.1.0-test' };

export const CKKS: LedgerEncryption = {
  scheme: 'ckks',
  keyFingerprint: '3f9a1c2b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd',
  parameters: { polyModulusDegree: 8192, coeffModulusBits: [60, 40, 40, 60], scale: 2 ** 40 },
};

export interface TestPki {
  ca: IssuedCertificate;
  server: IssuedCertificate;
  /** A CA of the same name that nobody trusts, and a server certificate it issued. */
  otherCa: IssuedCertificate;
  otherServer: IssuedCertificate;
}

export async function createTestPki(): Promise<TestPki> {
  const ca = await createRootCa({ commonName: 'Federa test CA', curve: 'P-256' });
  const otherCa = await createRootCa({ commonName: 'Federa test CA', curve: 'P-256' });
  const server = await issueServerCertificate(ca, { dnsNames: ['coordinator.test'] });
  const otherServer = await issueServerCertificate(otherCa, { dnsNames: ['coordinator.test'] });
  return { ca, server, otherCa, otherServer };
}

/** The receipt a coordinator would return for `update`, signed with `server` (unsigned when null). */
export function receiptFor(update: LedgerEntry, server: IssuedCertificate | null, overrides: Partial<UpdateReceipt> = {}): UpdateReceipt {
  const body = {
    siteId: update.siteId,
    studyId: update.studyId ?? '',
    round: update.round ?? 1,
    sha256: update.sha256 ?? '',
    receivedBytes: update.bytes,
    receivedAtUnixMs: Date.now(),
    auditSeq: 40 + update.seq,
    ...overrides,
  };
  if (server === null) return { ...body, signature: '', certificatePem: '' };
  return { ...body, signature: signCanonical(receiptSignedBody(body), server.privateKeyPem), certificatePem: server.certificatePem };
}

/**
 * A typical ledger: opened, registration, dataset summary, round 1 (metrics, encrypted update, signed receipt),
 * round 2 (metrics, update without a receipt), evaluation: nine entries, the updates at seq 5 and 8.
 */
export async function writeSampleLedger(path: string, server: IssuedCertificate | null): Promise<{ ledger: PrivacyLedger; entries: LedgerEntry[] }> {
  const ledger = await PrivacyLedger.open(path, OPENING);
  const entries: LedgerEntry[] = [];
  const text = (value: string): Uint8Array => new TextEncoder().encode(value);
  entries.push(await ledger.record({ kind: 'registration', studyId: null, round: null, content: text('hello'), encryption: null }));
  entries.push(await ledger.record({ kind: 'dataset-summary', studyId: 'study-1', round: null, content: text('summary'), encryption: null }));
  entries.push(await ledger.record({ kind: 'metrics', studyId: 'study-1', round: 1, content: text('loss=0.5'), encryption: null, detail: { metric: 'train' } }));
  const update1 = await ledger.record({ kind: 'update', studyId: 'study-1', round: 1, content: new Uint8Array(4096).fill(7), encryption: CKKS });
  entries.push(update1);
  entries.push(await ledger.recordReceipt(update1, receiptFor(update1, server)));
  entries.push(await ledger.record({ kind: 'metrics', studyId: 'study-1', round: 2, content: text('loss=0.4'), encryption: null }));
  entries.push(await ledger.record({ kind: 'update', studyId: 'study-1', round: 2, content: { sha256: 'a'.repeat(64), bytes: 1_000_000 }, encryption: CKKS }));
  entries.push(await ledger.record({ kind: 'evaluation', studyId: 'study-1', round: 2, content: text('auc=0.9'), encryption: null }));
  return { ledger, entries };
}

export async function readLines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').slice(0, -1);
}

export async function writeLines(path: string, lines: readonly string[], terminated = true): Promise<void> {
  await writeFile(path, lines.join('\n') + (terminated ? '\n' : ''));
}
