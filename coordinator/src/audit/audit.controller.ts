import { Controller, Get, Header, HttpCode, Inject, PayloadTooLargeException, Post, Query, Req, Res, ServiceUnavailableException } from '@nestjs/common';
import type { Request, Response } from 'express';
import { z } from 'zod';
import {
  describeIssues,
  parseLedgerText,
  reconcileLedger,
  verifyAuditChain,
  verifyParsedLedger,
  writeAuditBundle,
  type AuditCheckpoint,
  type AuditRecord,
  type AuditVerification,
  type LedgerVerification,
  type ReconcileReport,
} from '@federa/shared';
import { Caller } from '../auth/caller.decorator.js';
import { Roles, type Principal } from '../auth/roles.js';
import { InputError } from '../http/input-error.js';
import { ApiDoc } from '../openapi/index.js';
import { auditCheckpointsSchema, auditRecordsPageSchema, auditVerificationSchema, reconciliationSchema } from './audit.api.js';
import { AuditLog } from './audit-log.js';

/** A site ledger of a long study: a few hundred bytes per message. */
const MAX_LEDGER_BYTES = 64 * 1024 * 1024;

/** Reads a request body up to `limit` bytes, as text; more is 413. */
async function readBody(request: Request, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new PayloadTooLargeException(`a ledger of more than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const seqText = z.string().regex(/^[0-9]{1,9}$/, 'must be a whole number').transform(Number);
const recordsQuerySchema = z
  .object({
    afterSeq: seqText.optional(),
    limit: seqText.pipe(z.int().min(1).max(1000)).optional(),
    kind: z.string().regex(/^[a-z][a-z0-9.-]{0,63}$/, 'must be an audit kind such as study.created').optional(),
    actor: z.string().regex(/^[a-z]+(:[A-Za-z0-9_-]{1,64})?$/, 'must be an actor such as token:<id> or site:<id>').optional(),
    studyId: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be a study id').optional(),
    siteId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a site id').optional(),
    round: seqText.optional(),
    from: z.iso.datetime({ offset: true }).transform((s) => new Date(s)).optional(),
    to: z.iso.datetime({ offset: true }).transform((s) => new Date(s)).optional(),
  })
  .strict();

export interface AuditRecordsPage {
  records: AuditRecord[];
  /** Pass as afterSeq for the next page; null when this page is the last. */
  nextAfterSeq: number | null;
}

export interface ReconciliationResult {
  ledger: LedgerVerification;
  reconciliation: ReconcileReport;
}

/** REST for auditors (and admins): the audit log, its verification, checkpoints, a signed export, reconciliation. */
@Controller('api/v1/audit')
export class AuditController {
  constructor(@Inject(AuditLog) private readonly audit: AuditLog) {}

  @Get('records')
  @Roles('auditor', 'admin')
  @ApiDoc({
    summary: 'Read audit records, oldest first, a page at a time',
    query: recordsQuerySchema,
    responses: { 200: { description: 'A page of records.', schema: auditRecordsPageSchema } },
    errors: { 400: 'A query parameter is invalid (each named in `issues`).' },
  })
  async records(@Query() query: Record<string, unknown>): Promise<AuditRecordsPage> {
    const parsed = recordsQuerySchema.safeParse(query);
    if (!parsed.success) throw new InputError('invalid audit query', describeIssues(parsed.error));
    const { afterSeq, limit = 100, ...filter } = parsed.data;
    const records = await this.audit.read(filter, { ...(afterSeq !== undefined ? { afterSeq } : {}), limit });
    return { records, nextAfterSeq: records.length === limit ? records[records.length - 1]!.seq : null };
  }

  /** The coordinator's own check of its chain and checkpoints; auditors re-check offline with `federa audit verify`. */
  @Get('verify')
  @Roles('auditor', 'admin')
  @ApiDoc({
    summary: 'Verify the hash chain and the signed checkpoints',
    description: "The coordinator's own check; auditors re-check offline with `federa audit verify`.",
    responses: { 200: { description: 'The verification report.', schema: auditVerificationSchema } },
  })
  async verify(): Promise<AuditVerification> {
    return verifyAuditChain(await this.audit.records(), this.verifyOptions(await this.audit.checkpoints()));
  }

  @Get('checkpoints')
  @Roles('auditor', 'admin')
  @ApiDoc({ summary: 'The signed checkpoints of the chain head', responses: { 200: { description: 'Every checkpoint.', schema: auditCheckpointsSchema } } })
  checkpoints(): Promise<AuditCheckpoint[]> {
    return this.audit.checkpoints();
  }

  /**
   * A JSON Lines bundle of every record and checkpoint, after a fresh checkpoint of the head, signed with the
   * coordinator's key: `federa audit verify --bundle FILE --ca ca.pem` checks it with only the CA certificate.
   */
  @Get('export')
  @Roles('auditor', 'admin')
  @ApiDoc({
    summary: 'Export the whole log as a signed bundle',
    description: 'JSON Lines: every record and checkpoint after a fresh checkpoint, signed with the coordinator kit\'s key. `federa audit verify --bundle FILE --ca ca.pem` checks it.',
    responses: { 200: { description: 'The bundle (an attachment).', contentType: 'application/x-ndjson' } },
    errors: { 503: 'The coordinator runs without a kit (--insecure), so it has no key to sign with.' },
  })
  async export(@Caller() caller: Principal, @Res() res: Response): Promise<void> {
    const signer = this.audit.signer;
    if (!signer) {
      throw new ServiceUnavailableException('exports are signed with the coordinator kit\'s key, and this coordinator runs without a kit (--insecure)');
    }
    await this.audit.append({ kind: 'audit.exported', actor: caller.actor, details: { tokenName: caller.name } });
    await this.audit.checkpoint();
    const exportedAt = new Date();
    const bundle = writeAuditBundle({
      consortium: signer.consortium,
      exportedAt,
      records: await this.audit.records(),
      checkpoints: await this.audit.checkpoints(),
      certificatePem: signer.certificatePem,
      privateKeyPem: signer.privateKeyPem,
    });
    res.setHeader('content-type', 'application/x-ndjson; charset=utf-8');
    res.setHeader('content-disposition', `attachment; filename="federa-audit-${exportedAt.toISOString().replace(/[:.]/g, '-')}.jsonl"`);
    res.send(bundle);
  }

  /** Matches a site's ledger (the request body, JSON Lines as `federa-site` keeps it) with this coordinator's records. */
  @Post('reconcile')
  @HttpCode(200)
  @Roles('auditor', 'admin')
  @Header('cache-control', 'no-store')
  @ApiDoc({
    summary: "Reconcile a site's ledger with the audit log",
    description: 'Matches the ledger `federa-site` keeps (the body, JSON Lines) with the records attributed to that site.',
    body: { description: "The site's ledger file.", contentTypes: ['application/x-ndjson'] },
    responses: { 200: { description: "The ledger's verification and the reconciliation.", schema: reconciliationSchema } },
    errors: { 400: 'Not a ledger (wrong content type, empty, unreadable, or one that cannot be reconciled).', 413: 'The ledger is larger than 64 MiB.' },
  })
  async reconcile(@Req() request: Request): Promise<ReconciliationResult> {
    if (!/^application\/x-ndjson\b/.test(request.headers['content-type'] ?? '')) {
      throw new InputError('invalid reconciliation request', ['body: send the site ledger file as the body with content-type application/x-ndjson']);
    }
    const text = await readBody(request, MAX_LEDGER_BYTES);
    if (text.length === 0) throw new InputError('invalid reconciliation request', ['body: the ledger is empty']);
    const parsed = parseLedgerText(text);
    if (parsed.entries.length === 0) {
      throw new InputError('invalid reconciliation request', [
        `body: no ledger entry could be read${parsed.problems[0] ? ` (line ${parsed.problems[0].line}: ${parsed.problems[0].reason})` : ''}`,
      ]);
    }
    const options = this.verifyOptions([]);
    const ledger = verifyParsedLedger(parsed, options.caPem ? { caPem: options.caPem } : {});
    const siteId = parsed.entries[0]!.siteId;
    const audit: AuditRecord[] = [];
    for await (const record of this.audit.all()) if (record.siteId === siteId) audit.push(record);
    const reconciliation = reconcileLedger(parsed.entries, audit, { siteId, ...(options.caPem ? { caPem: options.caPem } : {}) });
    return { ledger, reconciliation };
  }

  private verifyOptions(checkpoints: AuditCheckpoint[]): { checkpoints: AuditCheckpoint[]; caPem?: string; consortium?: string } {
    const signer = this.audit.signer;
    return signer ? { checkpoints, caPem: signer.caPem, consortium: signer.consortium } : { checkpoints };
  }
}
