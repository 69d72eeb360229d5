import {
  AUDIT_GENESIS_HASH,
  auditRecordBodySchema,
  auditRecordHash,
  STUDY_ID,
  canonicalJson,
  certificateFingerprint,
  checkpointSignedBody,
  createLogger,
  signCanonical,
  type AuditCheckpoint,
  type AuditRecord,
  type AuditRecordBody,
} from '@federa/shared';
import { setTimeout as delay } from 'node:timers/promises';
import { ZodError } from 'zod';
import type { Database, Prisma } from '../persistence/index.js';

/** What a caller states about an event; the log adds seq, time and the chain. */
export interface AuditEntry {
  kind: string;
  actor: string;
  studyId?: string | null;
  round?: number | null;
  siteId?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditFilter {
  kind?: string;
  actor?: string;
  studyId?: string;
  siteId?: string;
  round?: number;
  from?: Date;
  to?: Date;
}

/** The coordinator's key and certificate from its kit: what signs checkpoints, exports and receipts. */
export interface CoordinatorSigner {
  consortium: string;
  /** The consortium CA, to check signatures made with older certificates of this coordinator. */
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  /** Upper-case colon-separated SHA-256 of the certificate. */
  fingerprint: string;
}

export function signerFromKit(kit: {
  manifest: { consortium: string };
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
}): CoordinatorSigner {
  return {
    consortium: kit.manifest.consortium,
    caPem: kit.caPem,
    certificatePem: kit.certificatePem,
    privateKeyPem: kit.privateKeyPem,
    fingerprint: certificateFingerprint(kit.certificatePem),
  };
}

type Tx = Prisma.TransactionClient;

/** Serialises appends across processes sharing one PostgreSQL database (a coordinator and an offline CLI). */
const AUDIT_LOCK_KEY = 1_178_944_577;
/** Longer strings in details (a site's message, a reason) are cut: the log records events, not payloads. */
const MAX_DETAIL_STRING = 2_000;
const SITE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const MAX_INT4 = 2_147_483_647;
const PAGE = 1_000;

/**
 * The append-only, hash-chained audit log. Each append takes a transaction-scoped advisory lock, reads the head
 * and inserts the next record, so concurrent writers cannot fork the chain; the database refuses UPDATE, DELETE
 * and TRUNCATE on the table (triggers from the governance migration). `appendIn` puts a record in the same
 * transaction as the change it records, so one is never stored without the other.
 */
export class AuditLog {
  private readonly log = createLogger('audit');

  constructor(
    private readonly db: Database,
    readonly signer: CoordinatorSigner | null,
  ) {}

  /**
   * Appends one record in its own transaction. A transient failure (a busy database, a lost connection) is retried:
   * the event it records has usually happened already, and a record lost is a gap an auditor would see.
   */
  async append(entry: AuditEntry): Promise<AuditRecord> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.prisma.$transaction((tx) => this.appendIn(tx, entry), { maxWait: 30_000, timeout: 30_000 });
      } catch (error) {
        if (attempt >= 3 || error instanceof ZodError) throw error;
        this.log.warn({ kind: entry.kind, attempt, reason: (error as Error).message }, 'could not append an audit record; trying again');
        await delay(200 * attempt);
      }
    }
  }

  /**
   * Runs `work` and appends the entries it returns in one transaction, holding the log's lock from the start: checks
   * in `work` (a name still free, a study still a draft) cannot be raced by another audited change.
   */
  async transaction<T>(work: (tx: Tx) => Promise<{ result: T; audit: AuditEntry | AuditEntry[] }>): Promise<{ result: T; records: AuditRecord[] }> {
    return this.db.prisma.$transaction(
      async (tx) => {
        await tx.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY})`);
        const { result, audit } = await work(tx);
        const records: AuditRecord[] = [];
        for (const entry of Array.isArray(audit) ? audit : [audit]) records.push(await this.appendIn(tx, entry));
        return { result, records };
      },
      { maxWait: 30_000, timeout: 30_000 },
    );
  }

  async appendIn(tx: Tx, entry: AuditEntry): Promise<AuditRecord> {
    await tx.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY})`);
    const last = await tx.auditRecord.findFirst({ orderBy: { seq: 'desc' }, select: { seq: true, hash: true } });
    // Ids and rounds a caller sent that are not well formed go into details (bounded), never into the indexed
    // columns, so a hostile value can neither fail the insert nor make the record one verifiers reject.
    const given: Record<string, unknown> = {};
    const studyId = entry.studyId == null || STUDY_ID.test(entry.studyId) ? (entry.studyId ?? null) : ((given.studyIdGiven = entry.studyId), null);
    const siteId = entry.siteId == null || SITE_ID.test(entry.siteId) ? (entry.siteId ?? null) : ((given.siteIdGiven = entry.siteId), null);
    const round = entry.round == null || (Number.isInteger(entry.round) && entry.round >= 0 && entry.round <= MAX_INT4) ? (entry.round ?? null) : ((given.roundGiven = entry.round), null);
    const details = JSON.parse(canonicalJson(boundStrings({ ...(entry.details ?? {}), ...given }))) as Record<string, unknown>;
    const body: AuditRecordBody = {
      seq: (last?.seq ?? 0) + 1,
      at: new Date().toISOString(),
      kind: entry.kind,
      actor: entry.actor,
      studyId,
      round,
      siteId,
      details,
      prevHash: last?.hash ?? AUDIT_GENESIS_HASH,
    };
    // Anything else that would not verify is a bug here, not input: refuse it rather than break the chain.
    auditRecordBodySchema.parse(body);
    const hash = auditRecordHash(body);
    await tx.auditRecord.create({ data: { ...body, at: new Date(body.at), details: canonicalJson(details), hash } });
    return { ...body, hash };
  }

  /** Records in seq order after `afterSeq`, filtered, at most `limit`. */
  async read(filter: AuditFilter, page: { afterSeq?: number; limit: number }): Promise<AuditRecord[]> {
    const rows = await this.db.prisma.auditRecord.findMany({
      where: { ...whereOf(filter), ...(page.afterSeq !== undefined ? { seq: { gt: page.afterSeq } } : {}) },
      orderBy: { seq: 'asc' },
      take: page.limit,
    });
    return rows.map(recordOf);
  }

  /** Every record, in storage order, a page at a time. */
  async *all(): AsyncGenerator<AuditRecord> {
    let after = 0;
    for (;;) {
      const rows = await this.db.prisma.auditRecord.findMany({ where: { seq: { gt: after } }, orderBy: { seq: 'asc' }, take: PAGE });
      for (const row of rows) yield recordOf(row);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.seq;
    }
  }

  async records(): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    for await (const record of this.all()) out.push(record);
    return out;
  }

  async head(): Promise<{ seq: number; hash: string } | null> {
    return this.db.prisma.auditRecord.findFirst({ orderBy: { seq: 'desc' }, select: { seq: true, hash: true } });
  }

  async checkpoints(): Promise<AuditCheckpoint[]> {
    const rows = await this.db.prisma.auditCheckpoint.findMany({ orderBy: { seq: 'asc' } });
    return rows.map((row) => ({ ...row, at: row.at.toISOString() }));
  }

  /**
   * Signs the chain's head with the kit's key, unless the newest checkpoint already covers it. Without a kit
   * (insecure development mode) there is no key and nothing is signed.
   */
  async checkpoint(): Promise<AuditCheckpoint | null> {
    if (!this.signer) return null;
    const signer = this.signer;
    return this.db.prisma.$transaction(
      async (tx) => {
        await tx.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY})`);
        const head = await tx.auditRecord.findFirst({ orderBy: { seq: 'desc' }, select: { seq: true, hash: true } });
        if (!head) return null;
        const latest = await tx.auditCheckpoint.findFirst({ orderBy: { seq: 'desc' } });
        if (latest && latest.seq >= head.seq) return { ...latest, at: latest.at.toISOString() };
        const unsigned = {
          seq: head.seq,
          hash: head.hash,
          at: new Date().toISOString(),
          consortium: signer.consortium,
          certificateFingerprint: signer.fingerprint,
        };
        const checkpoint: AuditCheckpoint = {
          ...unsigned,
          certificatePem: signer.certificatePem,
          signature: signCanonical(checkpointSignedBody(unsigned), signer.privateKeyPem),
        };
        await tx.auditCheckpoint.create({ data: { ...checkpoint, at: new Date(checkpoint.at) } });
        this.log.info({ seq: checkpoint.seq }, 'audit checkpoint signed');
        return checkpoint;
      },
      { maxWait: 30_000, timeout: 30_000 },
    );
  }
}

function whereOf(filter: AuditFilter): Prisma.AuditRecordWhereInput {
  return {
    ...(filter.kind !== undefined ? { kind: filter.kind } : {}),
    ...(filter.actor !== undefined ? { actor: filter.actor } : {}),
    ...(filter.studyId !== undefined ? { studyId: filter.studyId } : {}),
    ...(filter.siteId !== undefined ? { siteId: filter.siteId } : {}),
    ...(filter.round !== undefined ? { round: filter.round } : {}),
    ...(filter.from || filter.to ? { at: { ...(filter.from ? { gte: filter.from } : {}), ...(filter.to ? { lte: filter.to } : {}) } } : {}),
  };
}

function recordOf(row: {
  seq: number;
  at: Date;
  kind: string;
  actor: string;
  studyId: string | null;
  round: number | null;
  siteId: string | null;
  details: string;
  prevHash: string;
  hash: string;
}): AuditRecord {
  return { ...row, at: row.at.toISOString(), details: JSON.parse(row.details) as Record<string, unknown> };
}

function boundStrings(value: unknown): unknown {
  if (typeof value === 'string') return value.length > MAX_DETAIL_STRING ? `${value.slice(0, MAX_DETAIL_STRING)}... (cut)` : value;
  if (Array.isArray(value)) return value.slice(0, 1_000).map(boundStrings);
  if (value instanceof Date) return value.toISOString();
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, boundStrings(v)]));
  }
  return value;
}
