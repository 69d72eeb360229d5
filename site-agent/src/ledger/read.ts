import { readFile } from 'node:fs/promises';
import { LedgerError, parseLedgerText, type ParsedLedger } from '@federa/shared';

/** Reads and parses a ledger file. Throws only when the file cannot be read, naming the path. */
export async function readLedger(path: string): Promise<Required<ParsedLedger>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'the file does not exist' : (error as Error).message;
    throw new LedgerError(`cannot read the privacy ledger ${path}: ${why}`, { cause: error });
  }
  return parseLedgerText(text);
}
