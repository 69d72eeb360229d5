import { verifyParsedLedger, type LedgerVerification, type ParsedLedger, type VerifyLedgerOptions } from '@federa/shared';
import { readLedger } from './read.js';

/** `federa-site ledger verify`: reads the file (or takes parsed entries) and verifies it. */
export async function verifyLedger(source: string | ParsedLedger, options: VerifyLedgerOptions = {}): Promise<LedgerVerification> {
  if (typeof source === 'string') return verifyParsedLedger(await readLedger(source), options, source);
  return verifyParsedLedger(source, options);
}
