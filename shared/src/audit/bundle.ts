import { createHash } from 'node:crypto';
import { z } from 'zod';
import { inspectCertificate, keyMatchesCertificate } from '../pki/certificate.js';
import { signCanonical, verifyCanonical } from '../pki/signing.js';
import { verifyCertificate } from '../pki/verify.js';
import { canonicalJson } from '../study/canonical-json.js';
import { describeIssues } from '../study/definition.js';
import { auditCheckpointSchema, auditRecordSchema, type AuditCheckpoint, type AuditRecord } from './record.js';
import { formatAuditVerification, verifyAuditChain, type AuditVerification } from './verify.js';

/**
 * An audit export as JSON Lines: a header naming the consortium and the exporting coordinator's certificate, the
 * records in seq order, the signed checkpoints, and a last line signing the SHA-256 of everything before it. Line
 * oriented so a reader can diff, grep or stream it; signed as a whole so nothing can be cut or edited unnoticed.
 */
export const AUDIT_BUNDLE_FORMAT = 'federa-audit-bundle/1';
export const AUDIT_BUNDLE_SIGNATURE_TYPE = 'federa-audit-bundle-signature/1';

/** A bundle that cannot be read: each message names the line and the field. */
export class AuditBundleError extends Error {
  override readonly name = 'AuditBundleError';

  constructor(readonly issues: string[]) {
    super(`invalid audit bundle: ${issues.join('; ')}`);
  }
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256');

export const auditBundleHeaderSchema = z
  .object({
    type: z.literal('header'),
    format: z.literal(AUDIT_BUNDLE_FORMAT),
    consortium: z.string().min(1).max(200),
    exportedAt: z.iso.datetime({ precision: 3 }),
    records: z.int().min(0),
    checkpoints: z.int().min(0),
    certificatePem: z.string().min(1).max(16_384),
  })
  .strict();

const recordLineSchema = auditRecordSchema.extend({ type: z.literal('record') }).strict();
const checkpointLineSchema = auditCheckpointSchema.extend({ type: z.literal('checkpoint') }).strict();
const signatureLineSchema = z
  .object({ type: z.literal('signature'), sha256: sha256Hex, signature: z.string().min(1).max(1_024) })
  .strict();

export type AuditBundleHeader = z.output<typeof auditBundleHeaderSchema>;

export interface ParsedAuditBundle {
  header: AuditBundleHeader;
  records: AuditRecord[];
  checkpoints: AuditCheckpoint[];
  signature: { sha256: string; signature: string };
  /** SHA-256 of the lines before the signature line as they are in the text: what the signature should cover. */
  contentSha256: string;
}

export interface WriteAuditBundleOptions {
  consortium: string;
  exportedAt: Date;
  records: AuditRecord[];
  checkpoints: AuditCheckpoint[];
  /** The coordinator's server certificate and its key (from its kit). */
  certificatePem: string;
  privateKeyPem: string;
}

function signedStatement(sha256: string, consortium: string, exportedAt: string): Record<string, unknown> {
  return { type: AUDIT_BUNDLE_SIGNATURE_TYPE, sha256, consortium, exportedAt };
}

export function writeAuditBundle(options: WriteAuditBundleOptions): string {
  if (!keyMatchesCertificate(options.certificatePem, options.privateKeyPem)) {
    throw new AuditBundleError(['the private key does not belong to the signing certificate']);
  }
  const exportedAt = options.exportedAt.toISOString();
  const records = [...options.records].sort((a, b) => a.seq - b.seq);
  const checkpoints = [...options.checkpoints].sort((a, b) => a.seq - b.seq || a.at.localeCompare(b.at));
  const header: AuditBundleHeader = {
    type: 'header',
    format: AUDIT_BUNDLE_FORMAT,
    consortium: options.consortium,
    exportedAt,
    records: records.length,
    checkpoints: checkpoints.length,
    certificatePem: options.certificatePem,
  };
  const headerCheck = auditBundleHeaderSchema.safeParse(header);
  if (!headerCheck.success) throw new AuditBundleError(describeIssues(headerCheck.error).map((issue) => `header.${issue}`));

  const lines = [
    canonicalJson(header),
    ...records.map((record) => canonicalJson({ type: 'record', ...record })),
    ...checkpoints.map((checkpoint) => canonicalJson({ type: 'checkpoint', ...checkpoint })),
  ];
  const content = lines.map((line) => `${line}\n`).join('');
  const sha256 = createHash('sha256').update(content, 'utf8').digest('hex');
  const signature = signCanonical(signedStatement(sha256, options.consortium, exportedAt), options.privateKeyPem);
  return `${content}${canonicalJson({ type: 'signature', sha256, signature })}\n`;
}

/** Stop collecting after this many problems: a wholly wrong file would otherwise produce one per line. */
const MAX_ISSUES = 20;

type Section = 'header' | 'record' | 'checkpoint' | 'signature';
const SECTION_ORDER: Section[] = ['header', 'record', 'checkpoint', 'signature'];

export function parseAuditBundle(text: string): ParsedAuditBundle {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const issues: string[] = [];
  const issue = (message: string): void => {
    if (issues.length < MAX_ISSUES) issues.push(message);
  };
  if (lines.length === 0) throw new AuditBundleError(['the bundle is empty']);

  let header: AuditBundleHeader | null = null;
  const records: AuditRecord[] = [];
  const checkpoints: AuditCheckpoint[] = [];
  let signature: { sha256: string; signature: string } | null = null;
  let signatureLine = 0;
  let section = 0;
  const counts: Record<Section, number> = { header: 0, record: 0, checkpoint: 0, signature: 0 };

  for (const [index, line] of lines.entries()) {
    const n = index + 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      issue(`line ${n}: not JSON (${(error as Error).message})`);
      continue;
    }
    const type = typeof value === 'object' && value !== null ? (value as { type?: unknown }).type : undefined;
    const at = SECTION_ORDER.indexOf(type as Section);
    if (at < 0) {
      issue(`line ${n}: type: must be header, record, checkpoint or signature, not ${JSON.stringify(type)}`);
      continue;
    }
    const kind = type as Section;
    if (signatureLine > 0) {
      issue(`line ${n}: ${kind} after the signature on line ${signatureLine}: the signature must be the last line`);
    } else if (n === 1 && kind !== 'header') {
      issue(`line 1: the first line must be the header, not a ${kind}`);
    } else if (n > 1 && kind === 'header') {
      issue(`line ${n}: a second header`);
    } else if (at < section) {
      issue(`line ${n}: a ${kind} after the ${SECTION_ORDER[section]} lines: lines go header, records, checkpoints, signature`);
    }
    section = Math.max(section, at);
    // Counted by type, valid or not, so one bad line is reported once rather than again as a count mismatch.
    counts[kind] += 1;

    const schema = { header: auditBundleHeaderSchema, record: recordLineSchema, checkpoint: checkpointLineSchema, signature: signatureLineSchema }[kind];
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      for (const problem of describeIssues(parsed.error)) issue(`line ${n}: ${kind}.${problem}`);
      continue;
    }
    const { type: _type, ...body } = parsed.data;
    if (kind === 'header') header = parsed.data as AuditBundleHeader;
    else if (kind === 'record') records.push(body as AuditRecord);
    else if (kind === 'checkpoint') checkpoints.push(body as AuditCheckpoint);
    else {
      signature = body as { sha256: string; signature: string };
      signatureLine = n;
    }
  }

  const found = header;
  if (found !== null) {
    if (counts.record !== found.records) {
      issue(`the header announces ${found.records} record line(s) but the bundle holds ${counts.record}`);
    }
    if (counts.checkpoint !== found.checkpoints) {
      issue(`the header announces ${found.checkpoints} checkpoint line(s) but the bundle holds ${counts.checkpoint}`);
    }
  } else if (!issues.some((message) => message.startsWith('line 1:'))) {
    issue('the bundle has no header line');
  }
  if (counts.signature === 0) {
    issue(`the bundle ends at line ${lines.length} without its signature line: it was truncated`);
  }
  if (issues.length > 0 || found === null || signature === null) throw new AuditBundleError(issues);

  const content = lines
    .slice(0, signatureLine - 1)
    .map((line) => `${line}\n`)
    .join('');
  const contentSha256 = createHash('sha256').update(content, 'utf8').digest('hex');
  return { header: found, records, checkpoints, signature, contentSha256 };
}

export interface AuditBundleVerification extends AuditVerification {
  bundle: {
    consortium: string;
    exportedAt: string;
    signatureOk: boolean;
    /** Why the signature failed, when it did. */
    signatureReason?: string;
    certificate: { ok: boolean; reason?: string; subject?: string };
  };
}

function subjectOf(certificatePem: string): string | undefined {
  try {
    return inspectCertificate(certificatePem).subject;
  } catch {
    return undefined;
  }
}

function checkBundleSignature(parsed: ParsedAuditBundle): string | null {
  const { header, signature } = parsed;
  if (signature.sha256 !== parsed.contentSha256) {
    return `the signed SHA-256 ${signature.sha256.slice(0, 12)}... does not match the bundle's content (${parsed.contentSha256.slice(0, 12)}...): lines were edited, added or removed after it was signed`;
  }
  try {
    const statement = signedStatement(signature.sha256, header.consortium, header.exportedAt);
    if (!verifyCanonical(statement, signature.signature, header.certificatePem)) {
      return "the signature does not verify with the header's certificate";
    }
  } catch (error) {
    return `the signature cannot be checked: ${(error as Error).message}`;
  }
  return null;
}

/** Parses (throwing AuditBundleError), then checks the bundle's signature, its certificate and the chain inside. */
export function verifyAuditBundle(text: string, caPem: string): AuditBundleVerification {
  const parsed = parseAuditBundle(text);
  const { header } = parsed;
  const signatureReason = checkBundleSignature(parsed);
  const trusted = verifyCertificate(header.certificatePem, caPem, { purpose: 'server', at: new Date(header.exportedAt) });
  const subject = trusted.ok ? trusted.certificate.subject : subjectOf(header.certificatePem);
  const certificate = {
    ok: trusted.ok,
    ...(trusted.ok ? {} : { reason: trusted.reason }),
    ...(subject !== undefined ? { subject } : {}),
  };
  const chain = verifyAuditChain(parsed.records, { checkpoints: parsed.checkpoints, caPem, consortium: header.consortium });
  return {
    ...chain,
    ok: chain.ok && signatureReason === null && certificate.ok,
    bundle: {
      consortium: header.consortium,
      exportedAt: header.exportedAt,
      signatureOk: signatureReason === null,
      ...(signatureReason !== null ? { signatureReason } : {}),
      certificate,
    },
  };
}

export function formatAuditBundleVerification(v: AuditBundleVerification): string {
  const { bundle } = v;
  const who = bundle.certificate.subject ?? 'an unreadable certificate';
  const lines = [
    `audit bundle for consortium "${bundle.consortium}" exported at ${bundle.exportedAt} by ${who}: ${v.ok ? 'OK' : 'NOT VERIFIED'}`,
    bundle.signatureOk ? '  bundle signature OK' : `  bundle signature BAD: ${bundle.signatureReason ?? 'does not verify'}`,
    bundle.certificate.ok ? '  signing certificate trusted' : `  signing certificate NOT TRUSTED: ${bundle.certificate.reason ?? 'unknown reason'}`,
    formatAuditVerification(v),
  ];
  return lines.join('\n');
}
