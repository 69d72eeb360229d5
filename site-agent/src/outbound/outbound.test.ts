import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createRootCa,
  encodeMessage,
  federation,
  issueServerCertificate,
  receiptSignedBody,
  sha256Hex,
  signCanonical,
} from '@federa/shared';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { CoordinatorRefusal, CoordinatorRetry, type FederationClient } from '../client/index.js';
import { sitePolicySchema } from '../config/index.js';
import { ledgerPath, PrivacyLedger, readLedger, verifyLedger } from '../ledger/index.js';
import { Outbound } from './outbound.js';

/** A client that records what it was asked to send, and what the ledger held at that moment. */
function recordingClient(ledgerFile: string, receipt: (payload: Uint8Array) => federation.UploadReceipt) {
  const sent: Array<{ kind: string; ledgerLines: number; message: unknown }> = [];
  const note = async (kind: string, message: unknown) => {
    sent.push({ kind, message, ledgerLines: (await readFile(ledgerFile, 'utf8')).trim().split('\n').length });
  };
  const client = {
    register: async (m: unknown) => (await note('register', m), { siteId: 'hospital-a', coordinatorVersion: 'x' }),
    reportMetrics: async (m: unknown) => void (await note('metrics', m)),
    reportDatasetSummary: async (m: unknown) => void (await note('dataset-summary', m)),
    reportEvaluation: async (m: unknown) => void (await note('evaluation', m)),
    reportRefusal: async (m: unknown) => void (await note('refusal', m)),
    reportRoundFailure: async (m: unknown) => void (await note('failure', m)),
    uploadOffset: async () => 0,
    uploadUpdate: async (h: unknown, payload: Uint8Array) => (await note('update', h), receipt(payload)),
  };
  return { client: client as unknown as FederationClient, sent };
}

describe('the outbound path', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'federa-outbound-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('writes each message to the ledger, with the hash of its exact bytes, before sending it; withholds what the policy keeps', async () => {
    const path = ledgerPath(dir);
    const ledger = await PrivacyLedger.open(path, { siteId: 'hospital-a', certificateFingerprint: null, agentVersion: 't' });
    const { client, sent } = recordingClient(path, () => {
      throw new Error('no upload in this test');
    });
    const outbound = new Outbound(client, ledger, sitePolicySchema.parse({}), 'hospital-a', null);
    const metrics: federation.MetricsReport = {
      studyId: 's',
      round: 1,
      kind: federation.MetricKind.METRIC_KIND_TRAIN,
      loss: 0.5,
      accuracy: 0.75,
      samples: 321,
      seconds: 2,
      backend: 'wasm',
    };
    expect(await outbound.reportMetrics(metrics)).toBe(true);
    expect(await outbound.reportDatasetSummary({ studyId: 's', files: 3, accepted: 3, byClass: {}, byModality: {}, byTransferSyntax: {}, bySize: {}, rejectedByReason: {} })).toBe(false);
    const { entries } = await readLedger(path);
    const metricEntry = entries.find((e) => e.kind === 'metrics');
    // The sample count stayed at the site (shareMetrics: aggregate), and the ledger hashes exactly what left.
    const { samples: _samples, ...shared } = metrics;
    expect(sent[0]?.message).toEqual(shared);
    expect(metricEntry?.sha256).toBe(sha256Hex(encodeMessage(federation.MetricsReport, shared)));
    // The entry was on disk before the send: the ledger had it (opened + metrics) when the client was called.
    expect(sent[0]?.ledgerLines).toBe(2);
    expect(sent.map((s) => s.kind)).toEqual(['metrics']);
  });

  it('keeps the coordinator\'s signed receipt for an update, checked against the consortium CA', async () => {
    const ca = await createRootCa({ commonName: 'test CA', organization: 'test' });
    const server = await issueServerCertificate(ca, { dnsNames: ['localhost'] });
    const path = ledgerPath(dir);
    const ledger = await PrivacyLedger.open(path, { siteId: 'hospital-a', certificateFingerprint: null, agentVersion: 't' });
    const { client } = recordingClient(path, (payload) => {
      const body = { siteId: 'hospital-a', studyId: 's', round: 1, sha256: sha256Hex(payload), receivedBytes: payload.byteLength, receivedAtUnixMs: Date.now(), auditSeq: 7 };
      return { ...body, signature: signCanonical(receiptSignedBody(body), server.privateKeyPem), certificatePem: server.certificatePem };
    });
    const outbound = new Outbound(client, ledger, sitePolicySchema.parse({}), 'hospital-a', ca.certificatePem);
    const payload = new Uint8Array(1000).fill(7);
    const encryption = { scheme: 'ckks' as const, keyFingerprint: 'k1', parameters: { polyModulusDegree: 2048 } };
    await outbound.uploadUpdate(
      { studyId: 's', round: 1, encoding: federation.UpdateEncoding.UPDATE_ENCODING_CKKS, vectorLength: 10, baseModelSha256: '0'.repeat(64) },
      payload,
      encryption,
    );
    const { entries } = await readLedger(path);
    expect(entries.map((e) => e.kind)).toEqual(['opened', 'update', 'receipt']);
    expect(entries[1]).toMatchObject({ bytes: 1000, sha256: sha256Hex(payload), encrypted: true, encryption });
    expect(entries[2]?.receipt?.auditSeq).toBe(7);
    const verification = await verifyLedger(path, { caPem: ca.certificatePem });
    expect(verification.ok).toBe(true);
  });

  it('sends again while the coordinator cannot take a message, ledgering every attempt, and gives up on a real refusal at once', async () => {
    const path = ledgerPath(dir);
    const ledger = await PrivacyLedger.open(path, { siteId: 'hospital-a', certificateFingerprint: null, agentVersion: 't' });
    let uploads = 0;
    let refusals = 0;
    const client = {
      uploadOffset: async () => 0,
      uploadUpdate: async () => {
        uploads++;
        if (uploads <= 2) throw new CoordinatorRefusal(GrpcStatus.UNAVAILABLE, 'the coordinator\'s database is briefly unavailable');
        return { siteId: 'hospital-a', studyId: 's', round: 1, sha256: sha256Hex(new Uint8Array(10)), receivedBytes: 10, receivedAtUnixMs: 0, auditSeq: 3, signature: '', certificatePem: '' };
      },
      reportRefusal: async () => {
        refusals++;
        throw new CoordinatorRefusal(GrpcStatus.FAILED_PRECONDITION, 'round 1 of s is closed');
      },
    } as unknown as FederationClient;
    const outbound = new Outbound(client, ledger, sitePolicySchema.parse({}), 'hospital-a', null, new CoordinatorRetry({ windowMs: 60_000, firstWaitMs: 5, maxWaitMs: 20 }));
    const header = { studyId: 's', round: 1, encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32, vectorLength: 2, baseModelSha256: '0'.repeat(64) };
    const receipt = await outbound.uploadUpdate(header, new Uint8Array(10), null);
    expect(receipt.auditSeq).toBe(3);
    expect(uploads).toBe(3);
    const refusal = { studyId: 's', round: 1, task: federation.TaskKind.TASK_KIND_TRAIN, reason: federation.RefusalReason.REFUSAL_REASON_NOT_APPROVED, message: 'no', studyHash: 'h' };
    await expect(outbound.reportRefusal(refusal)).rejects.toThrow(/closed/);
    expect(refusals).toBe(1);
    const { entries } = await readLedger(path);
    // Each attempt was a send, so each is in the ledger; the receipt belongs to the one that arrived.
    expect(entries.map((e) => e.kind)).toEqual(['opened', 'update', 'update', 'update', 'receipt', 'refusal']);
  });

  it('ledgers no update the coordinator refuses before its bytes leave (a closed round, a stopped study)', async () => {
    const path = ledgerPath(dir);
    const ledger = await PrivacyLedger.open(path, { siteId: 'hospital-a', certificateFingerprint: null, agentVersion: 't' });
    let uploads = 0;
    const client = {
      uploadOffset: async () => {
        throw new CoordinatorRefusal(GrpcStatus.FAILED_PRECONDITION, 'study s is stopped; it takes no more uploads');
      },
      uploadUpdate: async () => {
        uploads++;
        throw new Error('must not be called');
      },
    } as unknown as FederationClient;
    const outbound = new Outbound(client, ledger, sitePolicySchema.parse({}), 'hospital-a', null);
    const header = { studyId: 's', round: 1, encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32, vectorLength: 2, baseModelSha256: '0'.repeat(64) };
    await expect(outbound.uploadUpdate(header, new Uint8Array(8), null)).rejects.toThrow(/stopped/);
    expect(uploads).toBe(0);
    expect((await readLedger(path)).entries.map((e) => e.kind)).toEqual(['opened']);
  });

  it('stops retrying when the deadline passes or the agent stops, with the coordinator\'s last answer', async () => {
    const path = ledgerPath(dir);
    const ledger = await PrivacyLedger.open(path, { siteId: 'hospital-a', certificateFingerprint: null, agentVersion: 't' });
    let calls = 0;
    const client = {
      reportMetrics: async () => {
        calls++;
        throw new CoordinatorRefusal(GrpcStatus.UNAVAILABLE, 'connect ECONNREFUSED');
      },
    } as unknown as FederationClient;
    const header = { studyId: 's', round: 1, encoding: federation.UpdateEncoding.UPDATE_ENCODING_PLAINTEXT_F32, vectorLength: 2, baseModelSha256: '0'.repeat(64) };
    const quick = new Outbound(client, ledger, sitePolicySchema.parse({}), 'hospital-a', null, new CoordinatorRetry({ windowMs: 60_000, firstWaitMs: 10, maxWaitMs: 10 }));
    // An upload's window is its round's deadline: already passed, so one attempt only.
    await expect(quick.uploadUpdate(header, new Uint8Array(4), null, Date.now())).rejects.toThrow();
    const retry = new CoordinatorRetry({ windowMs: 600_000, firstWaitMs: 60_000, maxWaitMs: 60_000 });
    const patient = new Outbound(client, ledger, sitePolicySchema.parse({}), 'hospital-a', null, retry);
    const metrics = { studyId: 's', round: 1, kind: federation.MetricKind.METRIC_KIND_TRAIN, loss: 1, accuracy: 0.5, seconds: 1, backend: 'wasm' };
    const pending = patient.reportMetrics(metrics);
    await new Promise((r) => setTimeout(r, 50));
    retry.stop();
    await expect(pending).rejects.toThrow(/ECONNREFUSED/);
    expect(calls).toBe(1);
  });
});
