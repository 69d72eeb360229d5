import { createHash } from 'node:crypto';
import { z } from 'zod';
import { signCanonical, type RevocationEntry } from '../../pki/index.js';
import { canonicalJson } from '../../study/canonical-json.js';
import { STUDY_ID } from '../../study/definition.js';
import type { MultipartyParameters } from './params.js';
import { collectivePublicKey } from './protocol.js';
import type { RnsRing } from './ring.js';
import { siteSignatureProblem } from './site-signature.js';
import { packResidues, residueBytes, unpackResidues } from './wire.js';

/**
 * Public-key shares as they travel: each site signs its p_i with its certificate key, the coordinator publishes the
 * collective key with the signed shares it summed, and every site checks both before it encrypts anything under
 * the key. The coordinator cannot slip in a share of its own (it has no site certificate), count a site twice, use a
 * revoked site's share, or publish a key that is not the sum of the shares it lists.
 */

/** What a site signs: its share's digest, bound to the study, the epoch, the parameters and the site. */
export const keyShareStatementSchema = z
  .object({
    kind: z.literal('federa.multiparty.key-share'),
    // Each study has its own key: a share signed for one cannot be replayed into another's collective key.
    studyId: z.string().regex(STUDY_ID),
    epoch: z.int().min(1),
    siteId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    parameters: z.string().regex(/^[0-9a-f]{64}$/),
    shareSha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();

export type KeyShareStatement = z.output<typeof keyShareStatementSchema>;

export interface SignedKeyShare {
  statement: KeyShareStatement;
  /** DER ECDSA signature, base64, over the statement's canonical JSON. */
  signature: string;
  certificatePem: string;
  /** p_i as residues (wire form). */
  share: Uint8Array;
}

/** The parameters every share and ciphertext is bound to: a digest of their canonical JSON. */
export function multipartyFingerprint(params: MultipartyParameters): string {
  return createHash('sha256').update(canonicalJson({ ...params, request: { ...params.request } }), 'utf8').digest('hex');
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** A site signs its public-key share for a study's epoch with the key of its kit. */
export function signKeyShare(
  ring: RnsRing,
  params: MultipartyParameters,
  input: { studyId: string; epoch: number; siteId: string; publicShare: Uint32Array; privateKeyPem: string; certificatePem: string },
): SignedKeyShare {
  const share = new Uint8Array(residueBytes(ring));
  packResidues(ring, input.publicShare, share, 0);
  const statement = keyShareStatementSchema.parse({
    kind: 'federa.multiparty.key-share',
    studyId: input.studyId,
    epoch: input.epoch,
    siteId: input.siteId,
    parameters: multipartyFingerprint(params),
    shareSha256: sha256(share),
  });
  return { statement, signature: signCanonical(statement, input.privateKeyPem), certificatePem: input.certificatePem, share };
}

export type CollectiveKeyCheck =
  | { ok: true; sites: string[]; publicKey: Uint32Array }
  | { ok: false; reason: string; siteId: string | null };

/**
 * What a site checks before it encrypts under a published collective key: every share is signed by a distinct,
 * unrevoked site certified by the consortium CA for this study, epoch and these parameters, and the key is their
 * sum. With `members`, the shares must be exactly those sites': a key missing a member's share would let the others
 * decrypt without it, and an extra site's share would let an outsider take part.
 */
export function verifyCollectiveKey(
  ring: RnsRing,
  params: MultipartyParameters,
  input: {
    studyId: string;
    epoch: number;
    shares: readonly SignedKeyShare[];
    publicKey: Uint8Array;
    caPem: string;
    revoked: readonly RevocationEntry[];
    members?: readonly string[];
    at?: Date;
  },
): CollectiveKeyCheck {
  const fingerprint = multipartyFingerprint(params);
  const seen = new Set<string>();
  const polys: Uint32Array[] = [];
  if (input.shares.length === 0) return { ok: false, reason: 'the key lists no shares', siteId: null };
  for (const signed of input.shares) {
    const parsed = keyShareStatementSchema.safeParse(signed.statement);
    if (!parsed.success) return { ok: false, reason: `a share's statement is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`, siteId: null };
    const { siteId, studyId, epoch, parameters, shareSha256 } = parsed.data;
    const refuse = (reason: string): CollectiveKeyCheck => ({ ok: false, reason: `the share of ${siteId}: ${reason}`, siteId });
    const problem = siteSignatureProblem(parsed.data, signed, input);
    if (problem) return refuse(problem);
    if (studyId !== input.studyId) return refuse(`it is for study ${studyId}, not ${input.studyId}`);
    if (epoch !== input.epoch) return refuse(`it is for epoch ${epoch}, not ${input.epoch}`);
    if (parameters !== fingerprint) return refuse('it is for other CKKS parameters');
    if (sha256(signed.share) !== shareSha256) return refuse('its bytes are not the ones it signed');
    if (seen.has(siteId)) return refuse('it is listed twice');
    seen.add(siteId);
    try {
      polys.push(unpackResidues(ring, signed.share, 0).poly);
    } catch (error) {
      return refuse((error as Error).message);
    }
  }
  if (input.members) {
    const members = new Set(input.members);
    const extra = [...seen].filter((site) => !members.has(site)).sort();
    if (extra.length > 0) {
      return { ok: false, reason: `the key lists a share of ${extra.join(', ')}, not a member of study ${input.studyId}`, siteId: extra[0] ?? null };
    }
    const missing = [...members].filter((site) => !seen.has(site)).sort();
    if (missing.length > 0) {
      return { ok: false, reason: `the key lacks the share of member ${missing.join(', ')} of study ${input.studyId}`, siteId: missing[0] ?? null };
    }
  }
  let published: Uint32Array;
  try {
    published = unpackResidues(ring, input.publicKey, 0).poly;
  } catch (error) {
    return { ok: false, reason: `the published key is corrupt: ${(error as Error).message}`, siteId: null };
  }
  const sum = collectivePublicKey(ring, polys);
  if (sum.length !== published.length || sum.some((v, i) => v !== published[i])) {
    return { ok: false, reason: 'the published key is not the sum of the shares it lists', siteId: null };
  }
  return { ok: true, sites: [...seen].sort(), publicKey: published };
}
