import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import {
  LEDGER_GENESIS_HASH,
  LedgerError,
  SECRET_FILE_MODE,
  checkLedgerChain,
  parseLedgerText,
  canonicalJson,
  createLogger,
  describeIssues,
  isSiteMessageKind,
  ledgerEntryBodySchema,
  ledgerEntryHash,
  syncDirectory,
  updateReceiptSchema,
  writeNewFile,
  type LedgerEntry,
  type LedgerEntryBody,
  type LedgerHead,
  type LedgerKind,
  type SiteMessageKind,
  type UpdateReceipt,
} from '@federa/shared';

const log = createLogger('site-agent.ledger');

/** The ledger's folder: only the agent's user may list it. */
export const LEDGER_DIR_MODE = 0o700;

/** The ledger cannot be appended to because its chain is broken; the agent must stop until an operator looks. */
export class LedgerDamagedError extends LedgerError {
  override readonly name: string = 'LedgerDamagedError';

  constructor(
    readonly path: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(
      `the privacy ledger ${path} is damaged at line ${line}: ${reason}. ` +
        'The agent will not append to a broken chain; run `federa-site ledger verify` to see the damage.',
    );
  }
}

export interface LedgerOpening {
  siteId: string;
  /** The fingerprint of the site's client certificate; null in insecure development mode. */
  certificateFingerprint: string | null;
  agentVersion: string;
}

export type LedgerEncryption = NonNullable<LedgerEntryBody['encryption']>;

/** Exactly the bytes that leave, or their digest when the caller hashed a large payload already (while streaming it). */
export type LedgerContent = Uint8Array | { sha256: string; bytes: number };

export interface LedgerMessage {
  kind: SiteMessageKind;
  studyId: string | null;
  round: number | null;
  content: LedgerContent;
  /** How the content was encrypted; null when it leaves in the clear. */
  encryption: LedgerEncryption | null;
  /** Words a reader needs (metric kind, refusal reason...): never patient data. */
  detail?: Record<string, unknown>;
}

type EntryFields = Omit<LedgerEntryBody, 'seq' | 'at' | 'siteId' | 'prevHash'>;

/** ISO 8601 without colons, which some file systems (Windows) refuse in names. */
function fileStamp(at: Date): string {
  return at.toISOString().replace(/:/g, '-');
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function digest(content: LedgerContent): { sha256: string; bytes: number } {
  if (content instanceof Uint8Array) {
    return { sha256: createHash('sha256').update(content).digest('hex'), bytes: content.byteLength };
  }
  return { sha256: content.sha256, bytes: content.bytes };
}

async function readExisting(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new LedgerError(`cannot read the privacy ledger ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Cuts the file back to `length` bytes and flushes the cut. */
async function truncateDurably(path: string, length: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(length);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A crash mid-append leaves a last line without its newline. Its message was never sent (sending waits for the
 * flush), so the bytes are moved aside, kept for an auditor, and the chain continues from the last complete line.
 * Returns the file content without them and the torn file's name.
 */
async function setAsideTornTail(path: string, content: Buffer): Promise<{ content: Buffer; tornFile: string }> {
  const keep = content.lastIndexOf(0x0a) + 1;
  const tornPath = `${path}.torn-${fileStamp(new Date())}`;
  await writeNewFile(tornPath, content.subarray(keep), SECRET_FILE_MODE);
  await truncateDurably(path, keep);
  await syncDirectory(dirname(path));
  log.warn(
    { ledger: path, tornFile: tornPath, tornBytes: content.length - keep },
    'the privacy ledger ended in an incomplete entry (the agent stopped while appending; that message was never sent): moved it aside',
  );
  return { content: content.subarray(0, keep), tornFile: basename(tornPath) };
}

/**
 * A site's privacy ledger: a hash-chained JSON Lines file with one entry per message the site sends. `record`
 * resolves only once the entry is flushed to disk, so a caller that sends after it resolves can never send
 * something the ledger does not show. Appends go through one queue, so concurrent callers cannot fork the chain.
 */
export class PrivacyLedger {
  private queue: Promise<unknown> = Promise.resolve();
  /** Set by a failed append: after that the file's state is uncertain, so the ledger refuses everything. */
  private failure: LedgerError | null = null;

  private constructor(
    private readonly file: string,
    private readonly siteId: string,
    private current: LedgerHead,
    /** The file's length as this instance last left it: a different length means another writer. */
    private size: number,
    /** seq -> hash of every update entry, so a receipt can only be attached to a real one. */
    private readonly updates: Map<number, string>,
  ) {}

  static async open(path: string, opening: LedgerOpening): Promise<PrivacyLedger> {
    const dir = dirname(path);
    // chmod after mkdir: the umask may narrow the mode; only a folder this call created is changed.
    if ((await mkdir(dir, { recursive: true, mode: LEDGER_DIR_MODE })) !== undefined) await chmod(dir, LEDGER_DIR_MODE);

    let content = await readExisting(path);
    let tornFile: string | null = null;
    if (content === null) {
      const handle = await open(path, 'wx', SECRET_FILE_MODE);
      await handle.close();
      await syncDirectory(dir);
      content = Buffer.alloc(0);
    } else if (content.length > 0 && content[content.length - 1] !== 0x0a) {
      const tail = content.subarray(content.lastIndexOf(0x0a) + 1).toString('utf8');
      // A tail that is complete JSON lost only its newline; it is checked like any line below and then terminated.
      if (!isJson(tail)) ({ content, tornFile } = await setAsideTornTail(path, content));
    }
    await chmod(path, SECRET_FILE_MODE);

    const parsed = parseLedgerText(content.toString('utf8'));
    const chain = checkLedgerChain(parsed);
    if (chain.broken !== null) throw new LedgerDamagedError(path, chain.broken.line, chain.broken.reason);
    if (chain.siteId !== null && chain.siteId !== opening.siteId) {
      throw new LedgerError(
        `the privacy ledger ${path} belongs to site "${chain.siteId}", not to this site "${opening.siteId}": ` +
          'is the state directory of another site configured here?',
      );
    }
    const updates = new Map(parsed.entries.filter((entry) => entry.kind === 'update').map((entry) => [entry.seq, entry.hash]));
    const head = chain.head ?? { seq: 0, hash: LEDGER_GENESIS_HASH };
    const ledger = new PrivacyLedger(path, opening.siteId, head, content.length, updates);

    if (!parsed.endsWithNewline) {
      log.warn({ ledger: path, seq: head.seq }, 'the last ledger entry lacked its newline (the agent stopped while appending it): completed it');
      await ledger.enqueue(() => ledger.writeDurably(Buffer.from('\n')));
    }
    // Every start leaves a mark, so restarts (and what a restart found) are visible to an auditor.
    await ledger.enqueue(() =>
      ledger.append({
        kind: 'opened',
        studyId: null,
        round: null,
        bytes: 0,
        sha256: null,
        encrypted: false,
        encryption: null,
        detail: {
          certificateFingerprint: opening.certificateFingerprint,
          agentVersion: opening.agentVersion,
          ...(tornFile === null ? {} : { tornTailMovedTo: tornFile }),
        },
      }),
    );
    return ledger;
  }

  get path(): string {
    return this.file;
  }

  get head(): LedgerHead {
    return { ...this.current };
  }

  /** Records a message about to be sent; send it only after this resolves. */
  async record(message: LedgerMessage): Promise<LedgerEntry> {
    if (!isSiteMessageKind(message.kind as LedgerKind)) {
      throw new LedgerError(`"${String(message.kind)}" is not a site message kind; opened and receipt entries are written by the ledger itself`);
    }
    // Hashed before queueing: a large payload does not hold up other appends, and call order is still entry order.
    const { sha256, bytes } = digest(message.content);
    return this.enqueue(() =>
      this.append({
        kind: message.kind,
        studyId: message.studyId,
        round: message.round,
        bytes,
        sha256,
        encrypted: message.encryption !== null,
        encryption: message.encryption,
        detail: message.detail ?? {},
      }),
    );
  }

  /** Stores the coordinator's receipt for an update entry; refuses one that does not describe that update. */
  async recordReceipt(update: LedgerEntry, receipt: UpdateReceipt): Promise<LedgerEntry> {
    const checked = updateReceiptSchema.safeParse(receipt);
    if (!checked.success) throw new LedgerError(`the coordinator's receipt is malformed: ${describeIssues(checked.error).join('; ')}`);
    if (update.kind !== 'update' || this.updates.get(update.seq) !== update.hash) {
      throw new LedgerError(`seq ${update.seq} is not an update entry of the privacy ledger ${this.file}`);
    }
    const r = checked.data;
    const pairs: Array<[string, unknown, unknown]> = [
      ['siteId', r.siteId, update.siteId],
      ['studyId', r.studyId, update.studyId],
      ['round', r.round, update.round],
      ['sha256', r.sha256, update.sha256],
      ['receivedBytes', r.receivedBytes, update.bytes],
    ];
    const differ = pairs.filter(([, got, want]) => got !== want);
    if (differ.length > 0) {
      const list = differ.map(([field, got, want]) => `${field} ${JSON.stringify(got)} (ledger: ${JSON.stringify(want)})`).join(', ');
      throw new LedgerError(`refusing the coordinator's receipt for update seq ${update.seq}: it disagrees with the ledger on ${list}`);
    }
    return this.enqueue(() =>
      this.append({
        kind: 'receipt',
        studyId: update.studyId,
        round: update.round,
        bytes: 0,
        sha256: null,
        encrypted: false,
        encryption: null,
        detail: {},
        refSeq: update.seq,
        receipt: r,
      }),
    );
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Builds the next entry and writes it; runs inside the queue only. */
  private async append(fields: EntryFields): Promise<LedgerEntry> {
    if (this.failure !== null) throw this.failure;
    const draft = { ...fields, seq: this.current.seq + 1, at: new Date().toISOString(), siteId: this.siteId, prevHash: this.current.hash };
    let normalized: unknown;
    try {
      // Round-trip through canonical JSON so the returned entry is exactly what a reader parses back.
      normalized = JSON.parse(canonicalJson(draft));
    } catch (error) {
      throw new LedgerError(`refusing to record a ${fields.kind} entry that is not plain JSON: ${(error as Error).message}`, { cause: error });
    }
    const checked = ledgerEntryBodySchema.safeParse(normalized);
    if (!checked.success) {
      throw new LedgerError(`refusing to record an invalid ${fields.kind} entry: ${describeIssues(checked.error).join('; ')}`);
    }
    const entry: LedgerEntry = { ...checked.data, hash: ledgerEntryHash(checked.data) };
    await this.writeDurably(Buffer.from(`${canonicalJson(entry)}\n`, 'utf8'));
    this.current = { seq: entry.seq, hash: entry.hash };
    if (entry.kind === 'update') this.updates.set(entry.seq, entry.hash);
    return entry;
  }

  /** Appends and flushes; on any failure the ledger fails closed (every later append is refused). */
  private async writeDurably(bytes: Buffer): Promise<void> {
    if (this.failure !== null) throw this.failure;
    let handle: FileHandle;
    try {
      // No O_CREAT: a ledger deleted under the agent must not be silently restarted.
      handle = await open(this.file, constants.O_WRONLY | constants.O_APPEND);
    } catch (error) {
      throw this.fail('it cannot be opened for appending', error);
    }
    try {
      const { size } = await handle.stat();
      if (size !== this.size) {
        throw this.fail(`it is ${size} bytes long but this agent left it at ${this.size} (another process writing the same ledger?)`);
      }
      try {
        await handle.appendFile(bytes);
        await handle.sync();
      } catch (error) {
        // Take back a partial line so a restart finds the chain as it was; the entry does not count either way.
        await handle
          .truncate(this.size)
          .then(() => handle.sync())
          .catch(() => undefined);
        throw this.fail('writing or flushing the entry failed', error);
      }
      this.size += bytes.length;
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  private fail(what: string, cause?: unknown): LedgerError {
    const because = cause === undefined ? '' : ` (${(cause as Error).message})`;
    this.failure = new LedgerError(
      `cannot append to the privacy ledger ${this.file}: ${what}${because}. The message must not be sent; ` +
        'the ledger accepts nothing more until the agent restarts and re-verifies it.',
      { cause },
    );
    log.error({ ledger: this.file, err: cause }, this.failure.message);
    return this.failure;
  }
}
