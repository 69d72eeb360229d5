import {
  createLogger,
  encodeMessage,
  federation,
  receiptOf,
  receiptSignedBody,
  verifyCanonical,
  verifyCertificate,
  type EvaluationCounts,
  type SegmentationCounts,
  type LedgerEntry,
  type UpdateReceipt,
} from '@federa/shared';
import { CoordinatorRetry, type FederationClient, type UploadHeader } from '../client/index.js';
import type { SitePolicy } from '../config/index.js';
import type { LedgerEncryption, PrivacyLedger } from '../ledger/index.js';
import { shareDatasetSummary, shareEvaluation, shareMetricsReport, shareSegmentationEvaluation } from '../policy/index.js';

/**
 * The one way out of the site. Every message passes the site policy (what may leave), then is written to the
 * privacy ledger with the SHA-256 of its exact bytes (flushed to disk), and only then sent. Updates arrive here
 * already encrypted (the round stores the ciphertext it will resend after an interruption); their receipt, signed by
 * the coordinator, is checked and kept in the ledger too.
 */
export class Outbound {
  private readonly log = createLogger('outbound');

  constructor(
    private readonly client: FederationClient,
    private readonly ledger: PrivacyLedger,
    private readonly policy: SitePolicy,
    private readonly siteId: string,
    /** The consortium CA receipts must chain to; null in the insecure development mode (receipts are unsigned). */
    private readonly caPem: string | null,
    /** Sends again while the coordinator cannot take a message; each attempt is a send, so each is ledgered. */
    private readonly retry: CoordinatorRetry = new CoordinatorRetry(),
  ) {}

  async register(request: federation.RegisterRequest): Promise<federation.RegisterResponse> {
    await this.record('registration', null, null, encodeMessage(federation.RegisterRequest, request), { backend: request.backend });
    return this.client.register(request);
  }

  /** Returns false when the policy withholds the report (nothing was sent). */
  async reportMetrics(report: federation.MetricsReport): Promise<boolean> {
    const shared = shareMetricsReport(report, this.policy);
    if (!shared) return false;
    await this.retry.call('metrics', async () => {
      await this.record('metrics', shared.studyId, shared.round, encodeMessage(federation.MetricsReport, shared), {
        metric: federation.metricKindToJSON(shared.kind),
        samplesShared: shared.samples !== undefined,
      });
      await this.client.reportMetrics(shared);
    });
    return true;
  }

  async reportDatasetSummary(summary: federation.DatasetSummary): Promise<boolean> {
    const shared = shareDatasetSummary(summary, this.policy);
    if (!shared) return false;
    await this.retry.call('dataset summary', async () => {
      await this.record('dataset-summary', shared.studyId, null, encodeMessage(federation.DatasetSummary, shared), {});
      await this.client.reportDatasetSummary(shared);
    });
    return true;
  }

  /** Sends what the policy lets out of an evaluation; under shareMetrics none, a refusal instead. */
  async reportEvaluation(
    counts: EvaluationCounts | SegmentationCounts,
    base: Pick<federation.EvaluationReport, 'studyId' | 'round' | 'classNames' | 'backend' | 'seconds'>,
    studyHash: string,
  ): Promise<'counts' | 'figures' | 'withheld'> {
    const shared = 'tp' in counts ? shareSegmentationEvaluation(counts, base, this.policy) : shareEvaluation(counts, base, this.policy);
    if (!shared) {
      await this.reportRefusal({
        studyId: base.studyId,
        round: base.round,
        task: federation.TaskKind.TASK_KIND_EVALUATE,
        reason: federation.RefusalReason.REFUSAL_REASON_METRICS_WITHHELD,
        message: 'this site\'s policy shares no metrics (policy.shareMetrics: none)',
        studyHash,
      });
      return 'withheld';
    }
    const kind = shared.figures || shared.segmentation?.figures ? 'figures' : 'counts';
    await this.retry.call('evaluation', async () => {
      await this.record('evaluation', shared.studyId, shared.round, encodeMessage(federation.EvaluationReport, shared), {
        shared: kind,
        ...(kind === 'counts' ? { minCountPerBin: this.policy.minCountPerBin } : {}),
      });
      await this.client.reportEvaluation(shared);
    });
    return kind;
  }

  /**
   * The consortium's statistics from a statistics round's decrypted sum: totals of every site, never this site's
   * own figures (which left only encrypted). Returns whether they match what other sites reported.
   */
  async reportStatistics(report: federation.StatisticsReport): Promise<boolean> {
    return this.retry.call('statistics', async () => {
      await this.record('statistics', report.studyId, report.round, encodeMessage(federation.StatisticsReport, report), { sha256: report.sha256 });
      return (await this.client.reportStatistics(report)).matches;
    });
  }

  async reportRefusal(refusal: federation.Refusal): Promise<void> {
    await this.retry.call('refusal', async () => {
      await this.record('refusal', refusal.studyId, refusal.round, encodeMessage(federation.Refusal, refusal), {
        task: federation.taskKindToJSON(refusal.task),
        reason: federation.refusalReasonToJSON(refusal.reason),
      });
      await this.client.reportRefusal(refusal);
    });
  }

  async reportRoundFailure(failure: federation.RoundFailure): Promise<void> {
    await this.retry.call('round failure', async () => {
      await this.record('refusal', failure.studyId, failure.round, encodeMessage(federation.RoundFailure, failure), {
        failure: federation.failureReasonToJSON(failure.reason),
      });
      await this.client.reportRoundFailure(failure);
    });
  }

  /** Multiparty: this site's signed public-key share for an epoch (its secret share never leaves the site). */
  async submitKeyShare(submission: federation.KeyShareSubmission): Promise<void> {
    await this.retry.call('key share', async () => {
      await this.record('key-share', submission.studyId, null, encodeMessage(federation.KeyShareSubmission, submission), { epoch: submission.epoch });
      await this.client.submitKeyShare(submission);
    });
  }

  /** Multiparty: this site's part of the epoch's model key, sealed to each other member's certificate key. */
  async submitEnvelopes(submission: federation.EnvelopeSubmission): Promise<void> {
    await this.retry.call('key envelopes', async () => {
      await this.record('key-envelopes', submission.studyId, null, encodeMessage(federation.EnvelopeSubmission, submission), {
        epoch: submission.epoch,
        recipients: submission.envelopes.map((e) => e.siteId),
      });
      await this.client.submitEnvelopes(submission);
    });
  }

  /** Multiparty: this site's key-switching share of a round's sum (computed once; a retry sends the same bytes). */
  async submitKeySwitchShare(submission: federation.KeySwitchShareSubmission, resent: boolean): Promise<federation.KeyEpochAck> {
    return this.retry.call('key-switching share', async () => {
      await this.record('key-switch-share', submission.studyId, submission.round, encodeMessage(federation.KeySwitchShareSubmission, submission), {
        epoch: submission.epoch,
        sumSha256: submission.sumSha256,
        resent,
      });
      return this.client.submitKeySwitchShare(submission);
    });
  }

  /**
   * Sends an update (already encrypted, or plaintext for a study the policy lets aggregate in the clear) and keeps
   * the coordinator's receipt. A receipt that does not check out is still kept, as evidence, and logged.
   */
  async uploadUpdate(
    header: UploadHeader,
    payload: Uint8Array,
    encryption: LedgerEncryption | null,
    until?: number,
    /** More for the ledger entry: the round's differential privacy, which the site's accounts read back. */
    extraDetail: Record<string, unknown> = {},
  ): Promise<federation.UploadReceipt> {
    const send = async (): Promise<federation.UploadReceipt> => {
      // Asked before the ledger entry: a closed round or a stopped study refuses the question (it carries the update's
      // hash and size, not its bytes), so the ledger lists only updates whose bytes went out.
      const offset = await this.client.uploadOffset(header, payload);
      const entry = await this.ledger.record({
        kind: 'update',
        studyId: header.studyId,
        round: header.round,
        content: payload,
        encryption,
        detail: { encoding: federation.updateEncodingToJSON(header.encoding), vectorLength: header.vectorLength, ...extraDetail },
      });
      const receipt = await this.client.uploadUpdate(header, payload, offset);
      if (receipt.resumedFrom > 0) this.log.info({ studyId: header.studyId, round: header.round, resumedFrom: receipt.resumedFrom, bytes: payload.byteLength }, 'upload resumed where the last attempt stopped');
      await this.keepReceipt(entry, receipt);
      return receipt;
    };
    // The coordinator takes an update once (by content hash), so sending it again is safe; late ones it refuses.
    return this.retry.call('update', send, until);
  }

  private async keepReceipt(entry: LedgerEntry, receipt: federation.UploadReceipt): Promise<void> {
    const kept = receiptOf(this.siteId, receipt);
    const problem = this.receiptProblem(kept);
    if (problem) this.log.error({ studyId: kept.studyId, round: kept.round, problem }, 'the coordinator\'s receipt does not check out; kept in the ledger as evidence');
    await this.ledger.recordReceipt(entry, kept);
  }

  private receiptProblem(receipt: UpdateReceipt): string | null {
    if (receipt.signature === '') return this.caPem ? 'the receipt is unsigned' : null;
    const { signature: _s, certificatePem: _c, ...body } = receipt;
    if (!verifyCanonical(receiptSignedBody(body), receipt.signature, receipt.certificatePem)) return 'the signature does not verify';
    if (this.caPem) {
      const chain = verifyCertificate(receipt.certificatePem, this.caPem, { purpose: 'server', at: new Date(receipt.receivedAtUnixMs) });
      if (!chain.ok) return `the signing certificate is not the consortium's coordinator: ${chain.reason}`;
    }
    return null;
  }

  private async record(
    kind: 'registration' | 'metrics' | 'dataset-summary' | 'evaluation' | 'refusal' | 'key-share' | 'key-envelopes' | 'key-switch-share' | 'statistics',
    studyId: string | null,
    round: number | null,
    bytes: Uint8Array,
    detail: Record<string, unknown>,
  ): Promise<void> {
    await this.ledger.record({ kind, studyId, round, content: bytes, encryption: null, detail });
  }
}
