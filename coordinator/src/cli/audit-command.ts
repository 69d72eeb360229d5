import { readFile, writeFile } from 'node:fs/promises';
import {
  auditCheckpointSchema,
  auditRecordSchema,
  formatAuditBundleVerification,
  formatAuditVerification,
  formatLedgerVerification,
  extendsEarlier,
  formatReconcileReport,
  parseAuditBundle,
  parseLedgerText,
  reconcileLedger,
  verifyAuditBundle,
  verifyAuditChain,
  verifyParsedLedger,
  type AuditCheckpoint,
  type AuditRecord,
  type AuditVerification,
} from '@federa/shared';
import { z } from 'zod';
import { AuditLog } from '../audit/audit-log.js';
import { openDatabase } from '../persistence/index.js';
import { ApiClient } from './api-client.js';
import { CliUsageError, type CliIo } from './io.js';

/** The options of `federa audit verify|export|reconcile` (flag names as typed). */
export interface AuditOptions {
  bundle?: string;
  ca?: string;
  url?: string;
  token?: string;
  'data-dir'?: string;
  'database-url'?: string;
  ledger?: string;
  out?: string;
  previous?: string;
  json: boolean;
}
type Values = AuditOptions;

/** Checks the hash chain and the signed checkpoints, with the CA, never taken on the coordinator's word. */
export async function auditVerify(values: Values, io: CliIo): Promise<number> {
  // Checkpoints are evidence only when signed by the consortium's coordinator: the CA is not optional.
  if (!values.ca) throw new CliUsageError('audit verify needs --ca ca.pem (the consortium CA certificate, from any kit)');
  const caPem = await readText(values.ca, 'CA certificate');
  let result: AuditVerification;
  let records: AuditRecord[];
  let text: string;
  if (values.bundle) {
    const bundle = await readText(values.bundle, 'audit bundle');
    const verified = verifyAuditBundle(bundle, caPem);
    result = verified;
    records = parseAuditBundle(bundle).records;
    text = formatAuditBundleVerification(verified);
  } else {
    const source = await auditSource(values, io);
    records = source.records;
    result = verifyAuditChain(records, { checkpoints: source.checkpoints, caPem });
    text = formatAuditVerification(result);
  }
  const continuity = values.previous ? await continues(values.previous, records, caPem) : null;
  const ok = result.ok && (continuity?.ok ?? true);
  if (values.json) io.stdout(`${JSON.stringify({ ...result, ok, ...(continuity ? { previous: continuity } : {}) }, null, 2)}\n`);
  else {
    io.stdout(`${text}\n`);
    if (continuity) io.stdout(`${continuity.ok ? 'extends' : 'DOES NOT extend'} the earlier export ${values.previous}: ${continuity.reason}\n`);
    if (result.checkpoints.total === 0) {
      io.stderr('no signed checkpoint: only the chain\'s own consistency was checked; keep exports and pass one with --previous\n');
    }
  }
  return ok ? 0 : 1;
}

/** Whether `records` still hold an earlier export (verified with the CA) unchanged. */
async function continues(previousPath: string, records: AuditRecord[], caPem: string): Promise<{ ok: boolean; reason: string }> {
  const earlier = verifyAuditBundle(await readText(previousPath, 'earlier audit bundle'), caPem);
  if (!earlier.ok) return { ok: false, reason: 'the earlier export does not verify itself' };
  return extendsEarlier(records, earlier.head);
}

export async function auditExport(values: Values, io: CliIo): Promise<number> {
  if (!values.out) throw new CliUsageError('audit export needs --out FILE');
  const text = await remote(values, io).text('/api/v1/audit/export');
  const parsed = parseAuditBundle(text);
  await writeFile(values.out, text);
  io.stdout(`wrote ${values.out}: ${parsed.records.length} records and ${parsed.checkpoints.length} checkpoints of consortium ${parsed.header.consortium}, signed at ${parsed.header.exportedAt}\n`);
  io.stdout(`verify it offline with: federa audit verify --bundle ${values.out} --ca ca.pem\n`);
  return 0;
}

export async function auditReconcile(values: Values, io: CliIo): Promise<number> {
  if (!values.ledger) throw new CliUsageError('audit reconcile needs --ledger LEDGER (the site\'s ledger.jsonl)');
  const caPem = values.ca ? await readText(values.ca, 'CA certificate') : undefined;
  const ledgerText = await readText(values.ledger, 'site ledger');
  const parsedLedger = parseLedgerText(ledgerText);
  const ledger = verifyParsedLedger(parsedLedger, caPem ? { caPem } : {}, values.ledger);
  let records: AuditRecord[];
  let chain;
  if (values.bundle) {
    if (!caPem) throw new CliUsageError('audit reconcile --bundle needs --ca ca.pem (the consortium CA certificate)');
    const bundleText = await readText(values.bundle, 'audit bundle');
    chain = verifyAuditBundle(bundleText, caPem);
    records = parseAuditBundle(bundleText).records;
  } else {
    const source = await auditSource(values, io);
    records = source.records;
    chain = verifyAuditChain(records, { checkpoints: source.checkpoints, ...(caPem ? { caPem } : {}) });
  }
  const siteId = parsedLedger.entries[0]?.siteId;
  if (!siteId) throw new Error(`${values.ledger} holds no readable ledger entry`);
  const report = reconcileLedger(parsedLedger.entries, records.filter((r) => r.siteId === siteId), { siteId, ...(caPem ? { caPem } : {}) });
  const ok = report.ok && ledger.ok && chain.ok;
  if (values.json) io.stdout(`${JSON.stringify({ ok, ledger, audit: chain, reconciliation: report }, null, 2)}\n`);
  else {
    io.stdout(`site ledger: ${formatLedgerVerification(ledger)}\n`);
    io.stdout(`coordinator audit log: ${values.bundle ? formatAuditBundleVerification(chain as ReturnType<typeof verifyAuditBundle>) : formatAuditVerification(chain)}\n`);
    io.stdout(`${formatReconcileReport(report)}\n`);
  }
  return ok ? 0 : 1;
}

/** The audit records and checkpoints, from a running coordinator (REST) or straight from its database. */
async function auditSource(values: Values, io: CliIo): Promise<{ records: AuditRecord[]; checkpoints: AuditCheckpoint[] }> {
  if (values.url || io.env.FEDERA_URL) {
    const api = remote(values, io);
    const get = (path: string): Promise<unknown> => api.json<unknown>(`/api/v1/audit/${path}`);
    const records: AuditRecord[] = [];
    let after = 0;
    for (;;) {
      const page = z
        .object({ records: z.array(auditRecordSchema), nextAfterSeq: z.int().nullable() })
        .parse(await get(`records?afterSeq=${after}&limit=1000`));
      records.push(...page.records);
      if (page.nextAfterSeq === null) break;
      after = page.nextAfterSeq;
    }
    const checkpoints = z.array(auditCheckpointSchema).parse(await get('checkpoints'));
    return { records, checkpoints };
  }
  const dataDir = values['data-dir'] ?? io.env.FEDERA_DATA_DIR;
  const databaseUrl = values['database-url'] ?? io.env.DATABASE_URL;
  if (!dataDir && !databaseUrl) {
    throw new CliUsageError('give the audit log to check: --bundle FILE, --url URL --token TOKEN, or --data-dir DIR');
  }
  const db = await openDatabase({ dataDir: dataDir ?? '.federa/coordinator', databaseUrl });
  try {
    const audit = new AuditLog(db, null);
    return { records: await audit.records(), checkpoints: await audit.checkpoints() };
  } finally {
    await db.close();
  }
}

function remote(values: Values, io: CliIo): ApiClient {
  const url = values.url ?? io.env.FEDERA_URL;
  const token = values.token ?? io.env.FEDERA_TOKEN;
  if (!url) throw new CliUsageError('give the coordinator\'s REST address with --url (e.g. http://127.0.0.1:8080), or run federa login');
  if (!token) throw new CliUsageError('give an auditor or admin token with --token or FEDERA_TOKEN, or run federa login');
  return new ApiClient({ url, token });
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read the ${what} ${path}: ${(error as Error).message}`);
  }
}
