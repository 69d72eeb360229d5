import { z } from 'zod';

/**
 * What the coordinator signs for every update it accepts, and what the site keeps in its ledger: proof, checkable
 * with only the consortium CA, that the coordinator received these exact bytes for this study and round, recorded
 * as audit record `auditSeq`.
 */
export const updateReceiptSchema = z
  .object({
    siteId: z.string().min(1).max(63),
    studyId: z.string().min(1).max(200),
    round: z.int().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    receivedBytes: z.int().min(0),
    receivedAtUnixMs: z.int().min(0),
    auditSeq: z.int().min(1),
    /** DER ECDSA over receiptSignedBody, base64; empty from a coordinator without a kit (insecure development mode). */
    signature: z.string().max(1_024),
    /** The coordinator's server certificate; empty when unsigned. */
    certificatePem: z.string().max(16_384),
  })
  .strict();

export type UpdateReceipt = z.output<typeof updateReceiptSchema>;

/** The receipt a site keeps, from what the coordinator answered (an UploadReceipt message) and who sent it. */
export function receiptOf(
  siteId: string,
  message: { studyId: string; round: number; sha256: string; receivedBytes: number; receivedAtUnixMs: number; auditSeq: number; signature: string; certificatePem: string },
): UpdateReceipt {
  const { studyId, round, sha256, receivedBytes, receivedAtUnixMs, auditSeq, signature, certificatePem } = message;
  return { siteId, studyId, round, sha256, receivedBytes, receivedAtUnixMs, auditSeq, signature, certificatePem };
}

export function receiptSignedBody(receipt: Omit<UpdateReceipt, 'signature' | 'certificatePem'>): Record<string, unknown> {
  return {
    type: 'federa-update-receipt/1',
    siteId: receipt.siteId,
    studyId: receipt.studyId,
    round: receipt.round,
    sha256: receipt.sha256,
    receivedBytes: receipt.receivedBytes,
    receivedAtUnixMs: receipt.receivedAtUnixMs,
    auditSeq: receipt.auditSeq,
  };
}
