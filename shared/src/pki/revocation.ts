import { z } from 'zod';
import { describeIssues, siteIdSchema } from '../study/index.js';
import { PkiError } from './errors.js';

export const fingerprint256Schema = z
  .string()
  .regex(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, 'must be a SHA-256 fingerprint: 32 colon-separated upper-case hex bytes');
export const serialNumberSchema = z.string().regex(/^[0-9A-F]+$/, 'must be upper-case hex');

/** One revoked site certificate. Matched by fingerprint; the serial is there for humans and CRL tooling. */
export const revocationEntrySchema = z
  .object({
    siteId: siteIdSchema,
    serialNumber: serialNumberSchema,
    fingerprint256: fingerprint256Schema,
    revokedAt: z.iso.datetime(),
    reason: z.string().max(500).optional(),
  })
  .strict();

/** The coordinator kit's revoked.json: a JSON array, empty until a site is revoked. */
export const revocationListSchema = z.array(revocationEntrySchema);

export type RevocationEntry = z.output<typeof revocationEntrySchema>;

export function parseRevocationList(json: string, source = 'revoked.json'): RevocationEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new PkiError(`${source} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = revocationListSchema.safeParse(value);
  if (!parsed.success) {
    throw new PkiError(`${source} is invalid: ${describeIssues(parsed.error).join('; ')}`);
  }
  return parsed.data;
}

/** The entry revoking this certificate, if any (a verified certificate, or a TLS peer certificate's fingerprint256). */
export function findRevocation(list: readonly RevocationEntry[], certificate: { fingerprint256: string }): RevocationEntry | undefined {
  const fingerprint = certificate.fingerprint256.toUpperCase();
  return list.find((entry) => entry.fingerprint256 === fingerprint);
}
