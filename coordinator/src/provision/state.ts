import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { describeIssues, fingerprint256Schema, siteIdSchema, type RevocationEntry } from '@federa/shared';
import { COORDINATOR_PARTICIPANT, validityDaysSchema } from './consortium.js';
import { ProvisionError } from './errors.js';

/**
 * Where everything lives under `--out`. `ca/` is the operator's: the CA key, the CKKS secret key and the
 * records needed to issue more kits later. It is never shipped; participant kits are `coordinator/` and
 * `sites/<id>/`.
 */
export interface KitsLayout {
  root: string;
  caDir: string;
  coordinatorDir: string;
  sitesDir: string;
  lockFile: string;
  siteDir(siteId: string): string;
  caFile(name: keyof typeof OPERATOR_FILES): string;
}

export const OPERATOR_FILES = {
  caCertificate: 'ca.pem',
  caKey: 'ca-key.pem',
  ckksSecretKey: 'ckks-secret.key',
  ckksPublicParams: 'ckks-public.params',
  consortium: 'consortium.json',
  issued: 'issued.json',
} as const;

export function kitsLayout(root: string): KitsLayout {
  const caDir = join(root, 'ca');
  const sitesDir = join(root, 'sites');
  return {
    root,
    caDir,
    coordinatorDir: join(root, COORDINATOR_PARTICIPANT),
    sitesDir,
    lockFile: join(root, '.provision.lock'),
    siteDir: (siteId) => join(sitesDir, siteId),
    caFile: (name) => join(caDir, OPERATOR_FILES[name]),
  };
}

const isoDate = z.iso.datetime();
const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case hex SHA-256');

/** ca/consortium.json: what add-site and renew need to issue kits consistent with the first provisioning. */
export const consortiumStateSchema = z
  .object({
    format: z.literal('federa-consortium/1'),
    name: z.string().min(1),
    createdAt: isoDate,
    caFingerprint256: fingerprint256Schema,
    coordinator: z.object({ hostnames: z.array(z.string()).min(1), ips: z.array(z.string()) }).strict(),
    validityDays: z.object({ ca: validityDaysSchema, server: validityDaysSchema, site: validityDaysSchema }).strict(),
    /** The one shared CKKS key (`--shared-key`, for aggregation: ckks); absent for a consortium of multiparty keys only. */
    ckks: z.object({ fingerprint: z.string().min(1), secretKeySha256: sha256HexSchema, publicParamsSha256: sha256HexSchema }).strict().optional(),
  })
  .strict();

/** One certificate the CA issued: the CA's own record, like OpenSSL's index.txt, and the source of revoked.json. */
export const issuedCertificateSchema = z
  .object({
    participant: z.union([z.literal(COORDINATOR_PARTICIPANT), siteIdSchema]),
    kind: z.enum(['server', 'site']),
    serialNumber: z.string().regex(/^[0-9A-F]+$/),
    fingerprint256: fingerprint256Schema,
    notBefore: isoDate,
    notAfter: isoDate,
    issuedAt: isoDate,
    revokedAt: isoDate.optional(),
    revocationReason: z.string().max(500).optional(),
  })
  .strict();

export const issuedLedgerSchema = z.object({ format: z.literal('federa-issued/1'), certificates: z.array(issuedCertificateSchema) }).strict();

export type ConsortiumState = z.output<typeof consortiumStateSchema>;
export type IssuedCertificateRecord = z.output<typeof issuedCertificateSchema>;
export type IssuedLedger = z.output<typeof issuedLedgerSchema>;

export async function readJsonFile<T extends z.ZodType>(path: string, schema: T, missingHint: string): Promise<z.output<T>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new ProvisionError(`${path} is missing: ${missingHint}`);
    throw new ProvisionError(`cannot read ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ProvisionError(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ProvisionError(`${path} is invalid: ${describeIssues(parsed.error).join('; ')}`);
  }
  return parsed.data;
}

/** JSON as written into kits: two-space indented with a final newline, so re-deriving a file gives the same bytes. */
export function toJsonFile(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** revoked.json for the coordinator kit, derived from the ledger so it can always be rebuilt identically. */
export function revocationListFromLedger(ledger: IssuedLedger): RevocationEntry[] {
  return ledger.certificates
    .filter((record) => record.kind === 'site' && record.revokedAt !== undefined)
    .map((record) => ({
      siteId: record.participant,
      serialNumber: record.serialNumber,
      fingerprint256: record.fingerprint256,
      revokedAt: record.revokedAt!,
      ...(record.revocationReason === undefined ? {} : { reason: record.revocationReason }),
    }));
}
