export {
  LEDGER_GENESIS_HASH,
  LEDGER_KINDS,
  isSiteMessageKind,
  ledgerEncryptionSchema,
  ledgerEntryBodySchema,
  ledgerEntryHash,
  ledgerEntrySchema,
  type LedgerEntry,
  type LedgerEntryBody,
  type LedgerKind,
} from './entry.js';
export { LedgerError, TORN_LINE_REASON, parseLedgerText, type LedgerLineProblem, type ParsedLedger } from './parse.js';
export {
  checkLedgerChain,
  formatLedgerVerification,
  verifyParsedLedger,
  type LedgerChainCheck,
  type LedgerHead,
  type LedgerProblem,
  type LedgerReceiptCheck,
  type LedgerReceiptStatus,
  type LedgerUnacknowledgedUpdate,
  type LedgerVerification,
  type VerifyLedgerOptions,
} from './verify.js';
