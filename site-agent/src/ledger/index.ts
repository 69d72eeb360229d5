import { join } from 'node:path';

export {
  LEDGER_DIR_MODE,
  LedgerDamagedError,
  PrivacyLedger,
  type LedgerContent,
  type LedgerEncryption,
  type LedgerMessage,
  type LedgerOpening,
} from './ledger.js';
export { readLedger } from './read.js';
export { verifyLedger } from './verify.js';
export { filterLedger, formatBytes, formatLedger, type LedgerFilter } from './format.js';

export const LEDGER_FILE = 'ledger.jsonl';

/** Where the agent keeps its ledger inside its state directory. */
export function ledgerPath(stateDir: string): string {
  return join(stateDir, 'ledger', LEDGER_FILE);
}
