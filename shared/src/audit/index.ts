export {
  AUDIT_GENESIS_HASH,
  AUDIT_KIND_OF_SITE_MESSAGE,
  AUDIT_KIND_SITE_MESSAGE_REFUSED,
  SITE_MESSAGE_KINDS,
  auditActorSchema,
  auditCheckpointSchema,
  auditRecordBodySchema,
  auditRecordHash,
  auditRecordSchema,
  checkpointSignedBody,
  siteMessageDetailsSchema,
  type AuditCheckpoint,
  type AuditRecord,
  type AuditRecordBody,
  type SiteMessageKind,
} from './record.js';
export { receiptOf, receiptSignedBody, updateReceiptSchema, type UpdateReceipt } from './receipt.js';
export {
  formatAuditVerification,
  verifyAuditChain,
  extendsEarlier,
  type AuditVerification,
  type VerifyAuditChainOptions,
} from './verify.js';
export {
  AUDIT_BUNDLE_FORMAT,
  AUDIT_BUNDLE_SIGNATURE_TYPE,
  AuditBundleError,
  auditBundleHeaderSchema,
  formatAuditBundleVerification,
  parseAuditBundle,
  verifyAuditBundle,
  writeAuditBundle,
  type AuditBundleHeader,
  type AuditBundleVerification,
  type ParsedAuditBundle,
  type WriteAuditBundleOptions,
} from './bundle.js';
export {
  ReconcileError,
  formatReconcileReport,
  reconcileLedger,
  type AlteredItem,
  type ReconcileItem,
  type ReconcileOptions,
  type ReconcileReport,
} from './reconcile.js';
export type { ReceiptFailure } from './reconcile-receipts.js';
