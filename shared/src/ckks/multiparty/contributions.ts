import { createHash } from 'node:crypto';
import { z } from 'zod';
import { signCanonical, type RevocationEntry } from '../../pki/index.js';
import { STUDY_ID } from '../../study/definition.js';
import { siteSignatureProblem } from './site-signature.js';

/**
 * Before a site computes a key-switching share, which lets the sum be read under the model key, it checks what the
 * sum is made of: at least its policy's minParticipants updates, each signed by a distinct site the consortium CA
 * certified and did not revoke, all for this epoch, study and round, and the summed c1 it was sent is the one the
 * request names. A site signs each update it sends (the SHA-256 of its payload, and of its c1 part: c1-parts.ts), so
 * a coordinator cannot make up contributors. Whether the c1 sent is really the sum of those updates' c1 parts is
 * checked apart (the site agent's policy.verifySum: it downloads every part): see PARAMETERS.md, "Threat model".
 */

export const contributionStatementSchema = z
  .object({
    kind: z.literal('federa.multiparty.contribution'),
    epoch: z.int().min(1),
    studyId: z.string().regex(STUDY_ID),
    round: z.int().min(1),
    siteId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    parameters: z.string().regex(/^[0-9a-f]{64}$/),
    updateSha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** SHA-256 of the update's c1 part (c1-parts.ts), which members sum to check the c1 they switch. */
    c1Sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();

export type ContributionStatement = z.output<typeof contributionStatementSchema>;

export interface SignedContribution {
  statement: ContributionStatement;
  signature: string;
  certificatePem: string;
}

/** A site signs the update it sends: the statement travels with the update and comes back with a share request. */
export function signContribution(statement: Omit<ContributionStatement, 'kind'>, privateKeyPem: string, certificatePem: string): SignedContribution {
  const parsed = contributionStatementSchema.parse({ kind: 'federa.multiparty.contribution', ...statement });
  return { statement: parsed, signature: signCanonical(parsed, privateKeyPem), certificatePem };
}

export interface ShareRequest {
  epoch: number;
  studyId: string;
  round: number;
  parameters: string;
  /** SHA-256 of the summed c1 (wire bytes) the share is asked for. */
  sumSha256: string;
  contributions: readonly SignedContribution[];
}

/** Passed: the contributors, sorted, and their statements in that order. */
export type ShareRequestCheck = { ok: true; sites: string[]; statements: ContributionStatement[] } | { ok: false; reason: string };

/**
 * The checks above, against the site's policy and, when given, the bytes of C1 the site received. A member that
 * builds the sum from the listed updates' c1 parts checks the built sum's hash itself, after these pass.
 */
export function checkShareRequest(
  request: ShareRequest,
  input: { sumBytes?: Uint8Array; minParticipants: number; caPem: string; revoked: readonly RevocationEntry[]; at?: Date },
): ShareRequestCheck {
  if (input.sumBytes) {
    const digest = createHash('sha256').update(input.sumBytes).digest('hex');
    if (digest !== request.sumSha256) return { ok: false, reason: `the sum received hashes to ${digest}, not the ${request.sumSha256} the request names` };
  }
  const sites = new Set<string>();
  const statements: ContributionStatement[] = [];
  for (const signed of request.contributions) {
    const parsed = contributionStatementSchema.safeParse(signed.statement);
    if (!parsed.success) return { ok: false, reason: `a contribution's statement is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}` };
    const s = parsed.data;
    const refuse = (why: string): ShareRequestCheck => ({ ok: false, reason: `the contribution of ${s.siteId}: ${why}` });
    if (s.epoch !== request.epoch || s.studyId !== request.studyId || s.round !== request.round) {
      return refuse(`it is for epoch ${s.epoch}, study ${s.studyId} round ${s.round}, not this sum's`);
    }
    if (s.parameters !== request.parameters) return refuse('it is for other CKKS parameters');
    const problem = siteSignatureProblem(s, signed, input);
    if (problem) return refuse(problem);
    if (sites.has(s.siteId)) return refuse('it is listed twice');
    sites.add(s.siteId);
    statements.push(s);
  }
  if (sites.size < input.minParticipants) {
    return { ok: false, reason: `the sum holds ${sites.size} site(s)' updates; this site's policy needs at least ${input.minParticipants} (policy.minParticipants)` };
  }
  statements.sort((a, b) => (a.siteId < b.siteId ? -1 : 1));
  return { ok: true, sites: statements.map((s) => s.siteId), statements };
}
