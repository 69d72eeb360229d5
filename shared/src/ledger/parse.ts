import { describeIssues } from '../study/definition.js';
import { ledgerEntrySchema, type LedgerEntry } from './entry.js';

/** Every error this module raises on purpose, so callers (the CLI) can tell them from bugs. */
export class LedgerError extends Error {
  override readonly name: string = 'LedgerError';
}

/** A line of the ledger file that is not a valid entry. Lines are numbered from 1, as an editor shows them. */
export interface LedgerLineProblem {
  line: number;
  reason: string;
}

export interface ParsedLedger {
  /** The valid entries, in file order; invalid lines are skipped (and listed in `problems`). */
  entries: LedgerEntry[];
  problems: LedgerLineProblem[];
  /** `lines[i]` is the line number of `entries[i]`; absent means entries sit on lines 1..n. */
  lines?: number[];
  /** False when the file does not end with a newline: its last line was never completely appended. */
  endsWithNewline?: boolean;
}

/** What a truncated last line is reported as; verify and the agent's open recognise torn writes by it. */
export const TORN_LINE_REASON =
  'incomplete last line: the file ends in the middle of an entry (a crash while appending, or a truncated file)';

/**
 * Parses ledger text line by line. Never throws on content: a line that is not JSON or not a valid entry becomes a
 * problem and is skipped, so `verify` can still say where the damage is and `show` can still show the rest.
 */
export function parseLedgerText(text: string): Required<ParsedLedger> {
  const entries: LedgerEntry[] = [];
  const lines: number[] = [];
  const problems: LedgerLineProblem[] = [];
  const endsWithNewline = text.length === 0 || text.endsWith('\n');
  const segments = text.split('\n');
  // A terminated file splits into a last empty segment, which is no line at all.
  if (endsWithNewline) segments.pop();
  segments.forEach((segment, index) => {
    const line = index + 1;
    const unterminated = !endsWithNewline && index === segments.length - 1;
    if (segment.trim() === '') {
      problems.push({ line, reason: 'empty line' });
      return;
    }
    let value: unknown;
    try {
      value = JSON.parse(segment);
    } catch (error) {
      problems.push({ line, reason: unterminated ? TORN_LINE_REASON : `not JSON (${(error as Error).message})` });
      return;
    }
    const parsed = ledgerEntrySchema.safeParse(value);
    if (!parsed.success) {
      problems.push({ line, reason: `not a valid ledger entry: ${describeIssues(parsed.error).join('; ')}` });
      return;
    }
    entries.push(parsed.data);
    lines.push(line);
  });
  return { entries, problems, lines, endsWithNewline };
}
